"""The timestamping service: tokens (RFC 3161, RFC 5816, EN 319 422), every refusal with its
exact answer, the clock check, the records, client authentication and rate limits.

OpenSSL and pyHanko judge the tokens in tests/test_tsa_interop.py; here asn1crypto reads
them to check each field the standards name.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from asn1crypto import core, parser, tsp, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import select

from core.hsm.algorithms import Padding
from core.store.db import Database
from core.store.models import Timestamp
from tests.support.pki import Pki
from tests.support.tsa import (
    HASH_SIZES,
    REPLY,
    TimeStampResp,
    Tsa,
    failure_of,
    granted_token,
    make_tsa,
    query,
    tsu,
)
from tsa import clock as tsa_clock
from tsa import der
from tsa.authority import tsa_policy
from tsa.clock import KernelClock
from tsa.records import RecordWriter
from tsa.request import MAX_QUERY_BYTES, TimestampRequest, parse_request
from tsa.response import TsaRejection
from tsa.token import BTSP_POLICY

# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def tsa(pki: Pki) -> Iterator[Tsa]:
    made = make_tsa(pki)
    yield made
    made.service.authority.records.close()


def top_level_tags(sequence_der: bytes) -> list[int]:
    """The tag numbers of a DER SEQUENCE's elements, in order."""
    _, _, _, _, contents, _ = parser.parse(sequence_der)
    tags, offset = [], 0
    while offset < len(contents):
        _, _, tag, header, body, _ = parser.parse(contents[offset:], strict=False)
        tags.append(tag)
        offset += len(header) + len(body)
    return tags


def records(db: Database, serial: int) -> list[Timestamp]:
    with db.read() as session:
        return list(
            session.scalars(select(Timestamp).where(Timestamp.serial == format(serial, "x")))
        )


# -- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("cert_req", [True, False], ids=["cert", "nocert"])
@pytest.mark.parametrize("nonce", [None, 2**63 + 5], ids=["nononce", "nonce"])
def test_token_fields(
    tsa: Tsa, pki: Pki, hash_name: str, cert_req: bool, nonce: int | None
) -> None:
    digest = secrets.token_bytes(HASH_SIZES[hash_name])
    signed_data, tst = granted_token(
        tsa.stamp(query(hash_name, digest=digest, nonce=nonce, cert_req=cert_req))
    )
    signer = tsu(pki)
    cert = x509.Certificate.load(signer.certificate)
    assert tst["version"].native == "v1"
    assert tst["policy"].dotted == BTSP_POLICY  # [ca] policy_arc is empty in the test PKI
    assert tst["message_imprint"]["hash_algorithm"]["algorithm"].native == hash_name
    assert tst["message_imprint"]["hashed_message"].native == digest
    assert tst["nonce"].native == nonce  # RFC 3161 §2.4.2: echoed when sent
    assert 0 < tst["serial_number"].native < 2**160
    assert tst["accuracy"].native == {"seconds": 1, "millis": None, "micros": None}
    # EN 319 422 §5.2.2: ordering absent (or false); no extension.
    tst_der = signed_data["encap_content_info"]["content"].contents
    # version, policy, imprint, serial, genTime, accuracy, [nonce], tsa [0]: no BOOLEAN
    # (ordering), no [1] (extensions).
    assert top_level_tags(tst_der) == [2, 6, 16, 2, 24, 16, *([2] if nonce else []), 0]
    assert tst["tsa"].chosen.native == cert.subject.native
    # RFC 3161 §2.4.2: genTime with sub-second precision, no trailing zero in the fraction.
    text = tst["gen_time"].contents.decode()
    assert re.fullmatch(r"\d{14}(\.\d*[1-9])?Z", text), text
    assert abs(tst["gen_time"].native.timestamp() - time.time()) < 5
    # RFC 3161 §2.4.1: the TSU certificate exactly when certReq.
    if cert_req:
        assert [c.chosen.dump() for c in signed_data["certificates"]] == [signer.certificate]
    else:
        assert isinstance(signed_data["certificates"], core.Void)
    (signer_info,) = signed_data["signer_infos"]
    attrs = {a["type"].native: a["values"][0] for a in signer_info["signed_attrs"]}
    assert attrs["content_type"].native == "tst_info"
    assert attrs["message_digest"].native == hashlib.sha256(tst_der).digest()
    # RFC 5816 / EN 319 422 §5.2.2: ESSCertIDv2, hashAlgorithm left out for SHA-256.
    (ess,) = attrs["signing_certificate_v2"]["certs"]
    assert ess["cert_hash"].native == hashlib.sha256(signer.certificate).digest()
    assert b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01" not in ess.dump()
    assert ess["issuer_serial"]["serial_number"].native == cert.serial_number
    # The signature covers the signed attributes with the SET tag (RFC 5652 §5.4).
    signed = b"\x31" + signer_info["signed_attrs"].dump()[1:]
    public_key = cx509.load_der_x509_certificate(signer.certificate).public_key()
    signature = signer_info["signature"].native
    if signer.scheme.padding is Padding.ECDSA:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    else:  # tsa.authority.token_scheme: RSA tokens are PKCS#1 v1.5 (sha256WithRSAEncryption)
        assert isinstance(public_key, rsa.RSAPublicKey)
        assert signer_info["signature_algorithm"]["algorithm"].native == "sha256_rsa"
        public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())


def test_token_is_recorded(tsa: Tsa, pki: Pki) -> None:
    digest = secrets.token_bytes(48)
    _, tst = granted_token(tsa.stamp(query("sha384", digest=digest)))
    tsa.flush()
    (row,) = records(pki.ctx.db, tst["serial_number"].native)
    assert row.gen_time == tst["gen_time"].native
    assert (row.hash_algorithm, row.imprint) == ("sha384", digest.hex())
    assert (row.policy, row.client, row.signer_id) == (BTSP_POLICY, None, tsu(pki).id)


def test_serials_are_unique_and_requested_policy_accepted(tsa: Tsa) -> None:
    serials = set()
    for _ in range(200):
        _, tst = granted_token(tsa.stamp(query(policy=BTSP_POLICY)))
        serials.add(tst["serial_number"].native)
    assert len(serials) == 200


def test_policy_under_our_arc(pki: Pki) -> None:
    arc = "1.3.6.1.4.1.99999.1"
    config = replace(pki.config, ca=replace(pki.config.ca, policy_arc=arc))
    assert tsa_policy(config) == f"{arc}.3.1"
    fixed = replace(config, tsa=replace(config.tsa, policy_oid="1.2.3.4"))
    assert tsa_policy(fixed) == "1.2.3.4"


def test_configured_policy_and_accuracy(pki: Pki) -> None:
    own = "1.3.6.1.4.1.99999.1.3.1"
    made = make_tsa(pki, policy_oid=own, accuracy_ms=250)
    try:
        _, tst = granted_token(made.stamp(query(policy=own)))
        assert tst["policy"].dotted == own
        assert tst["accuracy"].native == {"seconds": None, "millis": 250, "micros": None}
        refused = made.stamp(query(policy=BTSP_POLICY))
        assert failure_of(refused) == "unaccepted_policy"
    finally:
        made.service.authority.records.close()


def test_gen_time_fraction_is_trimmed(tsa: Tsa) -> None:
    second = int(time.time()) + 1  # inside the TSU certificate's validity
    stem = datetime.fromtimestamp(second, UTC).strftime("%Y%m%d%H%M%S")
    for micros, fraction in ((0, ""), (500_000, ".5"), (120, ".00012"), (999_999, ".999999")):
        tsa.clock.micros = second * 1_000_000 + micros
        _, tst = granted_token(tsa.stamp(query()))
        assert tst["gen_time"].contents.decode() == f"{stem}{fraction}Z"


# -- refusals: each with its exact answer ------------------------------------------------------


GOOD = query(nonce=42, cert_req=True)
# SHA-256 with INTEGER 5 as parameters (RFC 5754: absent or NULL); asn1crypto will not
# build it, so by hand.
SHA256_WITH_PARAMETERS = der.tlv(
    der.SEQUENCE,
    der.integer(1)
    + der.tlv(
        der.SEQUENCE,
        der.tlv(der.SEQUENCE, der.oid("2.16.840.1.101.3.4.2.1") + der.integer(5))
        + der.tlv(der.OCTET_STRING, b"\x01" * 32),
    ),
)
EXT = {"extn_id": "1.2.3.4.5", "critical": True, "extn_value": b"\x05\x00"}


@pytest.mark.parametrize(
    ("body", "failure"),
    [
        pytest.param(b"", "bad_data_format", id="empty"),
        pytest.param(GOOD[:-3], "bad_data_format", id="truncated"),
        pytest.param(GOOD + b"\x00", "bad_data_format", id="trailing-byte"),
        pytest.param(b"\x30\x03\x02\x01", "bad_data_format", id="short-sequence"),
        pytest.param(secrets.token_bytes(64), "bad_data_format", id="garbage"),
        pytest.param(b"\x04\x02hi", "bad_data_format", id="octet-string"),
        pytest.param(query(version=2), "bad_request", id="version-2"),
        pytest.param(query(version=0), "bad_request", id="version-0"),
        pytest.param(query("sha1"), "bad_alg", id="sha1-imprint"),
        pytest.param(query("md5"), "bad_alg", id="md5-imprint"),
        pytest.param(query("sha224"), "bad_alg", id="sha224-imprint"),
        pytest.param(query("sha256", digest=b"\x01" * 31), "bad_data_format", id="short-imprint"),
        pytest.param(query("sha512", digest=b"\x01" * 48), "bad_data_format", id="imprint-len"),
        pytest.param(query("sha256", digest=b""), "bad_data_format", id="empty-imprint"),
        pytest.param(SHA256_WITH_PARAMETERS, "bad_data_format", id="sha256-params"),
        pytest.param(query(extensions=[EXT]), "unaccepted_extensions", id="critical-extension"),
        pytest.param(
            query(extensions=[{**EXT, "critical": False}]),
            "unaccepted_extensions",
            id="noncritical-extension",
        ),
        pytest.param(query(policy="1.2.3.4"), "unaccepted_policy", id="unknown-policy"),
    ],
)
def test_bad_requests(tsa: Tsa, body: bytes, failure: str) -> None:
    assert failure_of(tsa.stamp(body)) == failure


def test_null_parameters_are_echoed(tsa: Tsa) -> None:
    body = query(parameters=core.Null())
    _, tst = granted_token(tsa.stamp(body))
    assert tst["message_imprint"].dump() == tsp.TimeStampReq.load(body)["message_imprint"].dump()


def test_http_errors(tsa: Tsa) -> None:
    got = tsa.http.get("/tsa")
    assert got.status_code == 405 and got.headers["Allow"] == "POST"
    assert tsa.post(GOOD, content_type="application/octet-stream").status_code == 415
    assert tsa.post(GOOD, content_type="application/json").status_code == 415
    assert tsa.post(b"\x30" * (MAX_QUERY_BYTES + 1)).status_code == 413
    # Announced too large: refused before the body is read.
    announced = {"CONTENT_LENGTH": str(MAX_QUERY_BYTES + 1)}
    assert tsa.post(GOOD, environ_overrides=announced).status_code == 413


def test_fast_path_and_flask_view_answer_alike(tsa: Tsa) -> None:
    """tsa.views.FastPath answers ordinary requests; a body of unannounced length (chunked)
    takes the Flask view. Both answer the same way."""
    fast = tsa.post(GOOD, headers={"X-Request-Id": "abc"})
    chunked = {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    slow = tsa.post(GOOD, headers={"X-Request-Id": "abc"}, environ_overrides=chunked)
    for answer in (fast, slow):
        assert answer.status_code == 200
        granted_token(TimeStampResp.load(answer.data))
        assert answer.mimetype == REPLY
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Request-Id"] == "abc"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_parser_returns_request(tsa: Tsa) -> None:
    parsed = parse_request(query("sha512", nonce=-7, cert_req=True, policy="1.2.3"))
    assert isinstance(parsed, TimestampRequest)
    assert (parsed.hash.name, parsed.nonce, parsed.cert_req, parsed.req_policy) == (
        "sha512",
        -7,
        True,
        "1.2.3",
    )
    with pytest.raises(TsaRejection):
        parse_request(b"\x30\x00")


# -- the clock ---------------------------------------------------------------------------------


def test_untrusted_clock_refuses_and_records_nothing(tsa: Tsa, pki: Pki) -> None:
    tsa.clock.untrusted = "the TSU clock is not synchronised with UTC"
    resp = tsa.stamp(GOOD)
    assert failure_of(resp) == "time_not_available"
    assert resp["status"]["status_string"].native == [tsa.clock.untrusted]
    tsa.clock.untrusted = None
    granted_token(tsa.stamp(GOOD))


def _fake_adjtimex(
    state: int, status: int, maxerror: int, sec: int = 1_800_000_000, frac: int = 250_000
) -> Any:
    def call(pointer: Any) -> int:
        tx = pointer._obj
        tx.status, tx.maxerror, tx.time.tv_sec, tx.time.tv_usec = status, maxerror, sec, frac
        return state

    return call


@pytest.mark.parametrize(
    ("state", "status", "maxerror", "trusted"),
    [
        pytest.param(0, 0x2001, 20_000, True, id="synchronised"),
        pytest.param(5, 0x0041, 16_000_000, False, id="time-error"),
        pytest.param(0, tsa_clock.STA_UNSYNC, 1000, False, id="sta-unsync"),
        pytest.param(0, 0x0001, 1_500_000, False, id="error-above-accuracy"),
        pytest.param(tsa_clock.TIME_OOP, 0x0001, 1000, False, id="leap-second"),
        pytest.param(1, 0x0011, 1000, True, id="leap-second-announced"),
    ],
)
def test_kernel_clock_decision(
    monkeypatch: pytest.MonkeyPatch, state: int, status: int, maxerror: int, trusted: bool
) -> None:
    clock = KernelClock()
    monkeypatch.setattr(clock, "_ntp_adjtime", _fake_adjtimex(state, status, maxerror))
    reading = clock.read(1_000_000)
    assert (reading.untrusted is None) == trusted, reading
    # STA_NANO (0x2000): the fraction is in nanoseconds.
    fraction = 250 if status & tsa_clock.STA_NANO else 250_000
    assert reading.unix_micros == 1_800_000_000 * 1_000_000 + fraction


def test_kernel_clock_reads_this_machine() -> None:
    reading = KernelClock().read(1_000_000)
    assert abs(reading.unix_micros / 1e6 - time.time()) < 2
    assert ctypes.sizeof(tsa_clock._Timex) == 208


# -- records -----------------------------------------------------------------------------------


def test_batch_records_commit_within_the_flush_interval(tsa: Tsa, pki: Pki) -> None:
    _, tst = granted_token(tsa.stamp(query()))  # one token, then silence: no flush() here
    deadline = time.monotonic() + 5
    while not records(pki.ctx.db, tst["serial_number"].native):
        assert time.monotonic() < deadline, "the record was not written"
        time.sleep(0.02)


def test_sync_records_commit_before_the_answer(pki: Pki) -> None:
    made = make_tsa(pki, record="sync")
    try:
        _, tst = granted_token(made.stamp(query()))
        assert len(records(pki.ctx.db, tst["serial_number"].native)) == 1  # no flush needed
    finally:
        made.service.authority.records.close()


def _broken_writer(mode: str) -> RecordWriter:
    # An empty in-memory database: no timestamps table, so every batch fails.
    return RecordWriter(Database("sqlite://"), mode=mode)


def test_sync_record_failure_gives_no_token(tsa: Tsa) -> None:
    tsa.service.authority.records = _broken_writer("sync")
    assert failure_of(tsa.stamp(GOOD)) == "system_failure"


def test_batch_record_failure_stops_issuance(tsa: Tsa) -> None:
    writer = tsa.service.authority.records = _broken_writer("batch")
    granted_token(tsa.stamp(GOOD))  # answered before its record is written...
    deadline = time.monotonic() + 5
    while not writer._failing and time.monotonic() < deadline:
        time.sleep(0.02)
    resp = tsa.stamp(GOOD)  # ...but once the database refuses, no more tokens
    assert failure_of(resp) == "system_failure"
    assert resp["status"]["status_string"].native == ["timestamp records cannot be written now"]


def test_close_flushes_queued_records(pki: Pki) -> None:
    made = make_tsa(pki)
    serials = [granted_token(made.stamp(query()))[1]["serial_number"].native for _ in range(5)]
    made.service.authority.records.close()
    assert all(len(records(pki.ctx.db, s)) == 1 for s in serials)


def test_no_signer_is_a_system_failure(tsa: Tsa) -> None:
    tsa.service.authority.issuer_id = "persons"  # a CA without a TSU certificate
    tsa.service.authority._signer = None
    resp = tsa.stamp(GOOD)
    assert failure_of(resp) == "system_failure"
    assert resp["status"]["status_string"].native == ["no valid timestamping unit certificate"]


# -- who may ask, and how often ---------------------------------------------------------------


def test_token_auth(pki: Pki) -> None:
    made = make_tsa(pki, auth="token")
    try:
        assert made.post(GOOD).status_code == 401
        bad = {"Authorization": "Bearer sceau_not-a-token"}
        assert made.post(GOOD, headers=bad).status_code == 401
        client = pki.client("person-lcp")
        ok = {"Authorization": f"Bearer {client.token}"}
        _, tst = granted_token(made.stamp(GOOD, headers=ok))
        made.flush()
        (row,) = records(pki.ctx.db, tst["serial_number"].native)
        assert row.client == client.name
    finally:
        made.service.authority.records.close()


def test_rate_limit(pki: Pki) -> None:
    made = make_tsa(pki, rate_limit=1, rate_burst=2)
    try:
        granted_token(made.stamp(GOOD))
        granted_token(made.stamp(GOOD))
        limited = made.post(GOOD)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        # Another client (address) has its own bucket.
        other = made.post(GOOD, environ_base={"REMOTE_ADDR": "192.0.2.7"})
        assert other.status_code == 200
    finally:
        made.service.authority.records.close()
