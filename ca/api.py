"""Platform API for certificates: ``/ca/api/v1/certificates``. Views only move data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import load_der_x509_certificate
from flask import Blueprint, Response, request

from ca.issuance import CertificateAuthority, IssuedCertificate
from ca.requests import CertificateRequest, RevocationRequest
from core.accounts.clients import Client, authenticate
from core.errors import ErrorKind, SceauError
from core.http.requests import json_object, parse
from core.http.service import provided
from pki.context import context
from pki.revocation import CertificateRecord, find_certificate
from pki.revocation import revoke as revoke_certificate

bp = Blueprint("certificates", __name__, url_prefix="/ca/api/v1")

PKIX_CERT = "application/pkix-cert"


def pem(der: bytes) -> str:
    return load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def _client() -> Client:
    return authenticate(context().db, request.headers.get("Authorization"))


def _json(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def _now() -> datetime:
    return datetime.now(UTC)


def _issued_body(issued: IssuedCertificate) -> dict[str, Any]:
    return {
        "serial": issued.serial,
        "issuer": issued.issuer,
        "profile": issued.profile,
        "status": "issued",
        "not_before": issued.not_before.isoformat(),
        "not_after": issued.not_after.isoformat(),
        "certificate": pem(issued.certificate),
        "chain": [pem(c) for c in issued.chain],
        **({"credential_id": issued.credential_id} if issued.credential_id else {}),
    }


def _record_body(record: CertificateRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "serial": record.serial,
        "issuer": record.issuer,
        "profile": record.profile,
        "status": record.status,
        "subject": record.subject,
        "identity_proof": record.proof_id,
        "not_before": record.not_before.isoformat(),
        "not_after": record.not_after.isoformat(),
        "certificate": pem(record.certificate) if record.certificate else None,
        "chain": [pem(c) for c in context().issuers.chain(record.issuer)],
    }
    if record.revoked_at is not None:
        body["revocation"] = {
            "revoked_at": record.revoked_at.isoformat(),
            "reason": record.revocation_reason,
            "invalidity_date": record.invalidity_date.isoformat()
            if record.invalidity_date
            else None,
        }
    return body


@bp.post("/certificates")
def issue() -> Response:
    client = _client()
    body = parse(CertificateRequest, json_object())
    issued = provided(CertificateAuthority).issue(
        client,
        profile_id=body.profile,
        proof_id=body.identity_proof,
        csr_pem=body.csr,
        now=_now(),
    )
    return _json(_issued_body(issued), 201, Location=f"/ca/api/v1/certificates/{issued.serial}")


@bp.get("/certificates/<serial>")
def fetch(serial: str) -> Response:
    client = _client()
    record = provided(CertificateAuthority).lookup(client, serial)
    accept = request.accept_mimetypes
    if accept.best_match([PKIX_CERT, "application/json"]) == PKIX_CERT and accept[PKIX_CERT]:
        if record.certificate is None:
            raise SceauError(ErrorKind.NOT_FOUND, "certificate not available")
        return Response(
            record.certificate,
            mimetype=PKIX_CERT,
            headers={"Content-Disposition": f'attachment; filename="{record.serial}.crt"'},
        )
    return _json(_record_body(record))


@bp.post("/certificates/<serial>/revoke")
def revoke(serial: str) -> Response:
    client = _client()
    body = parse(RevocationRequest, json_object())
    with context().db.read() as session:
        row_id = find_certificate(session, serial, client_id=client.id).id
    record = revoke_certificate(
        context().db,
        row_id,
        actor=client.actor,
        reason=body.reason,
        invalidity_date=body.invalidity_date,
        now=_now(),
    )
    return _json(_record_body(record))
