"""Platform API for identity proofs: ``/ra/api/v1/identity-proofs``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, request

from core.accounts.clients import authenticate
from core.errors import ErrorKind, SceauError
from core.http.problems import json_body
from core.store.models import IdentityProof
from pki.context import context
from registration.evidence import add_file
from registration.proofs import create_proof, file_body, proof_body, proof_files

bp = Blueprint("identity_proofs", __name__, url_prefix="/ra/api/v1")
# The one route whose body may exceed [service] max_body_bytes (registration/app.py).
UPLOAD_ENDPOINT = "identity_proofs.upload_file"


@bp.post("/identity-proofs")
def create() -> Response:
    ctx = context()
    client = authenticate(ctx.db, request.headers.get("Authorization"))
    proof = create_proof(
        ctx.db,
        ctx.sealer,
        ctx.profiles,
        client,
        json_body(),
        now=datetime.now(UTC),
        max_age=timedelta(days=ctx.config.registration.proof_max_age_days),
        retention_years=ctx.config.registration.retention_years,
    )
    return Response(
        json.dumps(proof_body(ctx.sealer, proof)),
        status=201,
        mimetype="application/json",
        headers={"Location": f"/ra/api/v1/identity-proofs/{proof.id}"},
    )


@bp.get("/identity-proofs/<proof_id>")
def fetch(proof_id: str) -> Response:
    ctx = context()
    client = authenticate(ctx.db, request.headers.get("Authorization"))
    with ctx.db.read() as session:
        proof = session.get(IdentityProof, proof_id[:64])
        files = proof_files(session, proof.id) if proof is not None else []
    if proof is None or proof.client_id != client.id:
        raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id[:64]!r}")
    return Response(json.dumps(proof_body(ctx.sealer, proof, files)), mimetype="application/json")


@bp.post("/identity-proofs/<proof_id>/files")
def upload_file(proof_id: str) -> Response:
    """One evidence file as the raw request body: ``?kind=document-front`` and
    ``Content-Type: image/jpeg | image/png | application/pdf`` (checked against the bytes)."""
    ctx = context()
    client = authenticate(ctx.db, request.headers.get("Authorization"))
    limit = ctx.config.registration.max_upload_bytes
    request.max_content_length = limit  # a chunked body is cut here too (413)
    row = add_file(
        ctx.db,
        ctx.sealer,
        client,
        proof_id[:64],
        kind=request.args.get("kind"),
        declared_type=request.mimetype,
        data=request.get_data(cache=False),
        max_bytes=limit,
        now=datetime.now(UTC),
    )
    return Response(
        json.dumps(file_body(row)),
        status=201,
        mimetype="application/json",
        headers={"Location": f"/ra/api/v1/identity-proofs/{row.proof_id}"},
    )
