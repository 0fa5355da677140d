"""Platform API for identity proofs: ``/ra/api/v1/identity-proofs``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Blueprint, Response, request

from core.accounts.clients import authenticate
from core.errors import ErrorKind, SceauError
from core.http.requests import json_object, parse
from pki.context import context
from pki.proofs import owned_proof
from registration.evidence import Upload, add_file
from registration.proofs import create_proof, file_body, proof_body, proof_files
from registration.requests import IdentityProofRequest

bp = Blueprint("identity_proofs", __name__, url_prefix="/ra/api/v1")
# The one route whose body may exceed [service] max_body_bytes (registration/app.py).
UPLOAD_ENDPOINT = "identity_proofs.upload_file"


@bp.post("/identity-proofs")
def create() -> Response:
    ctx = context()
    client = authenticate(ctx.db, request.headers.get("Authorization"))
    body = parse(IdentityProofRequest, json_object()).root
    proof = create_proof(ctx, client, body, now=datetime.now(UTC))
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
        proof = owned_proof(session, client.id, proof_id[:64])
        files = proof_files(session, proof.id) if proof is not None else []
    if proof is None:
        raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id[:64]!r}")
    return Response(json.dumps(proof_body(ctx.sealer, proof, files)), mimetype="application/json")


@bp.post("/identity-proofs/<proof_id>/files")
def upload_file(proof_id: str) -> Response:
    """One evidence file as the raw request body: ``?kind=document-front`` and
    ``Content-Type: image/jpeg | image/png | application/pdf`` (checked against the bytes)."""
    ctx = context()
    client = authenticate(ctx.db, request.headers.get("Authorization"))
    # A chunked body is cut at the limit too (413).
    request.max_content_length = ctx.config.registration.max_upload_bytes
    upload = Upload(
        proof_id=proof_id[:64],
        kind=request.args.get("kind"),
        declared_type=request.mimetype,
        data=request.get_data(cache=False),
    )
    row = add_file(ctx, client, upload, now=datetime.now(UTC))
    return Response(
        json.dumps(file_body(row)),
        status=201,
        mimetype="application/json",
        headers={"Location": f"/ra/api/v1/identity-proofs/{row.proof_id}"},
    )
