"""The public repository over HTTP: CRLs and CA certificates. Only bytes and headers here."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, Response, request
from sqlalchemy import select

from core.errors import ErrorKind, SceauError
from core.http.service import provided
from core.store.db import Database
from core.store.models import Crl
from crl.publisher import FULL
from pki.context import context

bp = Blueprint("crl", __name__)
# Digits of a shard number in a URL: far beyond any configured count, short enough that a
# hostile name never becomes a huge integer.
_MAX_SHARD_DIGITS = 6


@dataclass(frozen=True)
class ServedCrl:
    number: int
    this_update: datetime
    next_update: datetime
    der: bytes


class NewestCrls:
    """The newest CRL of each scope, its DER kept in memory until a newer one is stored: a
    request costs one indexed read of a few columns, the DER is read once per CRL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._served: dict[tuple[str, int], ServedCrl] = {}

    def get(self, issuer_id: str, shard: int) -> ServedCrl | None:
        with self._db.read() as session:
            newest = session.execute(
                select(Crl.id, Crl.number, Crl.this_update, Crl.next_update)
                .where(Crl.issuer_id == issuer_id, Crl.shard == shard)
                .order_by(Crl.number.desc())
                .limit(1)
            ).first()
            if newest is None:
                return None
            with self._lock:
                served = self._served.get((issuer_id, shard))
            if served is not None and served.number == newest.number:
                return served
            der = session.execute(select(Crl.der).where(Crl.id == newest.id)).scalar_one()
        served = ServedCrl(newest.number, newest.this_update, newest.next_update, der)
        with self._lock:
            current = self._served.get((issuer_id, shard))
            if current is None or current.number < served.number:
                self._served[(issuer_id, shard)] = served
        return served


def _scope(name: str) -> tuple[str, int]:
    """``persons`` -> (persons, FULL); ``persons-3`` -> (persons, 3); anything else 404."""
    issuers = context().issuers
    base, dash, digits = name.rpartition("-")
    if (
        dash
        and digits.isascii()
        and digits.isdigit()
        and len(digits) <= _MAX_SHARD_DIGITS
        and str(int(digits)) == digits  # one spelling per shard: no leading zeros
    ):
        try:
            return issuers.find(base).id, int(digits)
        except SceauError:
            pass  # not an issuer's shard; perhaps an issuer whose id ends in -<digits>
    return issuers.find(name).id, FULL


@bp.get("/crl/<name>.crl")
def crl(name: str) -> Response:
    issuer_id, shard = _scope(name)
    served = provided(NewestCrls)
    newest = served.get(issuer_id, shard)
    if newest is None:
        raise SceauError(ErrorKind.NOT_FOUND, f"no CRL published at /crl/{name}.crl")
    # RFC 5280 section 4.2.1.13 and RFC 2585 section 4: one DER CRL, application/pkix-crl.
    response = Response(newest.der, mimetype="application/pkix-crl")
    # Caches may keep it until nextUpdate, when relying parties want a newer one anyway.
    remaining = int((newest.next_update - datetime.now(UTC)).total_seconds())
    response.cache_control.public = True
    response.cache_control.max_age = max(0, remaining)
    response.expires = newest.next_update
    response.last_modified = newest.this_update
    # The URL names the scope; the CRL number is unique within it.
    response.set_etag(f"{newest.number:x}")
    # 304 on a matching If-None-Match or an unchanged If-Modified-Since.
    response.make_conditional(request)
    return response


@bp.get("/certs/<issuer_id>.crt")
def ca_certificate(issuer_id: str) -> Response:
    issuer = context().issuers.find(issuer_id)
    # RFC 5280 section 4.2.2.1: a single DER certificate, application/pkix-cert.
    return Response(
        issuer.certificate,
        mimetype="application/pkix-cert",
        headers={"Cache-Control": "public, max-age=86400"},
    )
