"""Platform API for identity proofs: ``/ra/api/v1/identity-proofs``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, request

from ca.clients import authenticate
from ca.context import context
from ca.errors import ErrorKind, SceauError
from ca.store.models import IdentityProof
from ca.web import json_body
from registration.proofs import create_proof, proof_body

bp = Blueprint("identity_proofs", __name__, url_prefix="/ra/api/v1")


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
    if proof is None or proof.client_id != client.id:
        raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id[:64]!r}")
    return Response(json.dumps(proof_body(ctx.sealer, proof)), mimetype="application/json")
