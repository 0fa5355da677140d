"""RFC 3161 as a client and the test PKI's TSA speak it: queries built field by field,
answers read with asn1crypto (a rejection too), and a TSA application with its own
settings and a clock the test sets."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms, core, tsp
from werkzeug.test import Client as WsgiClient

from core.http.service import provided
from pki.profiles import ProfileKind
from pki.signers import ActiveSigner, current_signer
from tests.support.pki import Pki
from tsa.app import create_app
from tsa.clock import ClockReading
from tsa.records import RecordWriter
from tsa.views import TsaService

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"
HASH_SIZES = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64, "md5": 16}


@dataclass
class FakeClock:
    """A TimeSource the test sets: the real time unless ``micros``, trusted unless told."""

    untrusted: str | None = None
    micros: int | None = None

    def read(self, accuracy_micros: int) -> ClockReading:
        now = self.micros if self.micros is not None else time.time_ns() // 1000
        return ClockReading(now, self.untrusted)


class TimeStampResp(core.Sequence):
    """RFC 3161's TimeStampResp, token OPTIONAL (asn1crypto 1.5.1 wrongly requires it,
    so it cannot read a rejection)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def query(  # noqa: PLR0913 - one keyword per TimeStampReq field
    hash_name: str = "sha256",
    *,
    digest: bytes | None = None,
    nonce: int | None = None,
    cert_req: bool = False,
    policy: str | None = None,
    version: int = 1,
    extensions: list[dict[str, Any]] | None = None,
    parameters: Any = None,
) -> bytes:
    """A DER TimeStampReq; ``digest`` defaults to a random value of the right size."""
    algorithm: dict[str, Any] = {"algorithm": hash_name}
    if parameters is not None:
        algorithm["parameters"] = parameters
    req: dict[str, Any] = {
        "version": version,
        "message_imprint": {
            "hash_algorithm": algorithm,
            "hashed_message": digest
            if digest is not None
            else secrets.token_bytes(HASH_SIZES[hash_name]),
        },
        "cert_req": cert_req,
    }
    if policy is not None:
        req["req_policy"] = policy
    if nonce is not None:
        req["nonce"] = nonce
    if extensions is not None:
        req["extensions"] = extensions
    return bytes(tsp.TimeStampReq(req).dump())


@dataclass
class Tsa:
    """A TSA application on a test PKI, with its own settings and clock."""

    app: Any
    http: WsgiClient
    service: TsaService
    clock: FakeClock

    def post(self, body: bytes, **kw: Any) -> Any:
        return self.http.post("/tsa", data=body, content_type=kw.pop("content_type", QUERY), **kw)

    def stamp(self, body: bytes, **kw: Any) -> TimeStampResp:
        response = self.post(body, **kw)
        assert response.status_code == 200, response.data
        assert response.mimetype == REPLY
        return TimeStampResp.load(response.data)

    def flush(self) -> None:
        assert self.service.authority.records.flush()


def make_tsa(pki: Pki, clock: FakeClock | None = None, **settings: Any) -> Tsa:
    """The TSA application of ``pki`` with ``[tsa]`` settings overridden."""
    config = replace(pki.config, tsa=replace(pki.config.tsa, **settings))
    fake = clock or FakeClock()
    app = create_app(replace(pki.ctx, config=config), clock=fake)
    return Tsa(app, WsgiClient(app), provided(TsaService, app), fake)


def devserver_records(pki: Pki) -> RecordWriter:
    """The record writer of the TSA inside ``pki.app`` (the all-services dispatcher)."""
    (tsa_app,) = {app for prefix, app in pki.app.routes if prefix == "/tsa/"}
    return provided(TsaService, tsa_app).authority.records


def tsu(pki: Pki) -> ActiveSigner:
    signer = current_signer(pki.ctx.db, ProfileKind.TSU, "root", datetime.now(UTC))
    assert signer is not None
    return signer


def granted_token(resp: TimeStampResp) -> tuple[cms.SignedData, tsp.TSTInfo]:
    assert resp["status"]["status"].native == "granted", resp["status"].native
    signed_data = resp["time_stamp_token"]["content"]
    return signed_data, signed_data["encap_content_info"]["content"].parsed


def failure_of(resp: TimeStampResp) -> str:
    """The one failure bit of a rejection, which must carry no token; asn1crypto's name
    for it (RFC 3161's unacceptedExtension is its "unaccepted_extensions")."""
    status = resp["status"]
    assert status["status"].native == "rejection", status.native
    assert isinstance(resp["time_stamp_token"], core.Void), "a rejection carries no token"
    (bit,) = status["fail_info"].native
    return str(bit)
