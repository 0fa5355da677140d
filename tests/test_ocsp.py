"""The OCSP responder in process, on SQLite and PostgreSQL: statuses, revocation within a
second, nonces, never-issued serials, unknown issuers, bad input, caching headers, the
pre-signing and renewal jobs. Responses are checked with cryptography and pkilint here;
tests/test_ocsp_live.py puts OpenSSL against a running server."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core
from asn1crypto import ocsp as aocsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from werkzeug.test import Client as WsgiClient
from werkzeug.test import TestResponse

from core.http.service import provided
from core.store.models import OcspResponse
from ocsp.jobs import presign_due, renew_responders, resign_revoked
from ocsp.views import OcspService
from pki.profiles import ProfileKind
from pki.revocation import serial_hex
from pki.signers import current_signer
from tests.support.builders import foreign_ca
from tests.support.clients import ApiClient
from tests.support.judges import lint_ocsp
from tests.support.ocsp import OCSP_REQUEST, get_path, issue_leaf, request_der, verified
from tests.support.pki import Pki
from tests.support.rows import insert_certificate

EXTENDED_REVOKE = x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.9")
ARCHIVE_CUTOFF = x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.6")


# -- helpers ---------------------------------------------------------------------------------


def raw_request(cert_ids: list[dict[str, Any]], **tbs: Any) -> bytes:
    """An OCSPRequest built field by field (what cryptography refuses to build)."""
    requests = [{"req_cert": c, **c.pop("_single", {})} for c in cert_ids]
    return bytes(aocsp.OCSPRequest({"tbs_request": {"request_list": requests, **tbs}}).dump())


def cert_id(issuer: x509.Certificate, serial: int, algorithm: str = "sha1") -> dict[str, Any]:
    ca = ax509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
    key = bytes(ca["tbs_certificate"]["subject_public_key_info"]["public_key"])
    return {
        "hash_algorithm": {"algorithm": algorithm},
        "issuer_name_hash": hashlib.new(algorithm, ca.subject.dump()).digest(),
        "issuer_key_hash": hashlib.new(algorithm, key).digest(),
        "serial_number": serial,
    }


def http(pki: Pki) -> WsgiClient:
    """A relying party: no API token."""
    return WsgiClient(pki.app)


def post(pki: Pki, der: bytes, content_type: str = OCSP_REQUEST) -> TestResponse:
    return http(pki).post("/ocsp", data=der, content_type=content_type)


def get(pki: Pki, der: bytes, encode: str = "standard") -> TestResponse:
    return http(pki).get(get_path(der, encode))


def status_of(body: bytes) -> str:
    return str(aocsp.OCSPResponse.load(body)["response_status"].native)


def service(pki: Pki) -> OcspService:
    app = dict(pki.app.routes)["/ocsp/"]
    svc = provided(OcspService, app)
    return svc


def revoke(api: ApiClient, cert: x509.Certificate, **body: Any) -> None:
    done = api.post(f"/ca/api/v1/certificates/{cert.serial_number:x}/revoke", body)
    assert done.status_code == 200, done.json


# -- statuses ------------------------------------------------------------------------------


def test_good_with_sha1_and_sha256_by_post_and_get(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    for algorithm in (hashes.SHA1(), hashes.SHA256()):  # noqa: S303 - CertID hashes
        der = request_der(leaf, x509.load_der_x509_certificate(chain[0]), algorithm)
        posted = post(pki, der)
        assert posted.status_code == 200
        assert posted.mimetype == "application/ocsp-response"
        assert "Cache-Control" not in posted.headers  # POST answers are not for caches
        response = verified(posted.data, chain[0])
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == leaf.serial_number
        assert response.next_update_utc - response.this_update_utc == timedelta(hours=24)
        assert [r.hash_algorithm.name for r in response.responses] == [algorithm.name]
        cutoff = response.single_extensions.get_extension_for_oid(ARCHIVE_CUTOFF)
        assert not cutoff.critical
        assert lint_ocsp(tmp_path, posted.data) == ""
        for encode in ("standard", "urlsafe", "percent"):
            fetched = get(pki, der, encode)
            assert fetched.status_code == 200, encode
            assert fetched.data == posted.data, encode  # the same pre-signed bytes
    headers = fetched.headers
    assert headers["ETag"] == f'"{hashlib.sha256(fetched.data).hexdigest()}"'
    assert headers["Last-Modified"] == response.this_update_utc.strftime(
        "%a, %d %b %Y %H:%M:%S GMT"
    )
    assert headers["Expires"] == response.next_update_utc.strftime("%a, %d %b %Y %H:%M:%S GMT")
    control = headers["Cache-Control"].split(", ")
    assert control[1:] == ["public", "no-transform", "must-revalidate"]
    max_age = int(control[0].removeprefix("max-age="))
    assert 12 * 3600 - 60 < max_age <= 12 * 3600  # until midlife, when it is re-signed


def test_revocation_is_answered_within_a_second(pki: Pki) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    der = request_der(leaf, x509.load_der_x509_certificate(chain[0]))
    assert verified(get(pki, der).data, chain[0]).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert verified(post(pki, der).data, chain[0]).certificate_status is ocsp.OCSPCertStatus.GOOD
    revoke(api, leaf, reason="keyCompromise", invalidity_date="2026-01-02T03:04:05Z")
    revoked_at = time.monotonic()
    while True:
        answers = [verified(get(pki, der).data, chain[0]), verified(post(pki, der).data, chain[0])]
        if all(a.certificate_status is ocsp.OCSPCertStatus.REVOKED for a in answers):
            break
        assert time.monotonic() - revoked_at < 1.0, "still good one second after revocation"
        time.sleep(0.02)
    for answer in answers:
        assert answer.revocation_reason is x509.ReasonFlags.key_compromise
        assert abs(answer.revocation_time_utc - datetime.now(UTC)) < timedelta(seconds=5)
        invalidity = answer.single_extensions.get_extension_for_class(x509.InvalidityDate)
        assert invalidity.value.invalidity_date_utc == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_unspecified_reason_is_left_out(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    revoke(api, leaf)  # reason defaults to unspecified
    body = post(pki, request_der(leaf, x509.load_der_x509_certificate(chain[0]))).data
    answer = verified(body, chain[0])
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is None  # RFC 5280 section 5.3.1
    assert lint_ocsp(tmp_path, body) == ""


def test_never_issued_serials_get_the_extended_revoked_answer(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-lcp")
    _, chain = issue_leaf(api)
    issuer = x509.load_der_x509_certificate(chain[0])
    reserved = x509.random_serial_number()
    now = datetime.now(UTC)
    # What a crash between reserving the serial and signing leaves behind.
    insert_certificate(
        pki,
        since=now,
        days=1,
        issuer_id="persons",
        serial=serial_hex(reserved),
        profile="person-lcp",
        status="reserved",
        subject="CN=reserved",
    )
    for serial in (x509.random_serial_number(), reserved, 0, -5):
        body = post(pki, raw_request([cert_id(issuer, serial)])).data
        answer = verified(body, chain[0])
        assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED, serial
        # RFC 6960 section 2.2: certificateHold at the epoch, flagged as extended revoke.
        assert answer.revocation_reason is x509.ReasonFlags.certificate_hold
        assert answer.revocation_time_utc == datetime(1970, 1, 1, tzinfo=UTC)
        assert not answer.extensions.get_extension_for_oid(EXTENDED_REVOKE).critical
        assert len(answer.single_extensions) == 0  # no CRL entry extension
        assert lint_ocsp(tmp_path, body) == ""
    with pki.ctx.db.read() as session:
        stored = session.query(OcspResponse).filter_by(serial=serial_hex(reserved)).count()
    assert stored == 0  # anyone may ask for any serial: nothing is stored for them


def test_the_root_answers_for_the_issuing_cas_and_its_signers(pki: Pki) -> None:
    api = pki.client("person-lcp")
    _, chain = issue_leaf(api)
    root = x509.load_der_x509_certificate(chain[-1])
    persons = x509.load_der_x509_certificate(chain[0])
    tsu = current_signer(pki.ctx.db, ProfileKind.TSU, "root", datetime.now(UTC))
    assert tsu is not None
    for cert in (persons, x509.load_der_x509_certificate(tsu.certificate)):
        body = post(pki, request_der(cert, root, hashes.SHA256())).data
        assert verified(body, chain[-1]).certificate_status is ocsp.OCSPCertStatus.GOOD


def test_several_certificates_of_one_ca_in_one_request(pki: Pki) -> None:
    api = pki.client("person-lcp")
    (first, chain), (second, _) = issue_leaf(api), issue_leaf(api)
    revoke(api, second, reason="superseded")
    issuer = x509.load_der_x509_certificate(chain[0])
    ids = [cert_id(issuer, first.serial_number), cert_id(issuer, second.serial_number, "sha256")]
    answer = verified(post(pki, raw_request(ids)).data, chain[0])
    statuses = [(r.serial_number, r.certificate_status) for r in answer.responses]
    assert statuses == [
        (first.serial_number, ocsp.OCSPCertStatus.GOOD),
        (second.serial_number, ocsp.OCSPCertStatus.REVOKED),
    ]
    too_many = [cert_id(issuer, first.serial_number) for _ in range(21)]
    assert status_of(post(pki, raw_request(too_many)).data) == "unauthorized"


def test_unknown_issuers_are_unauthorized(pki: Pki) -> None:
    api = pki.client("person-lcp", "seal-lcp")
    leaf, chain = issue_leaf(api)
    foreign = foreign_ca("Someone Else's CA")
    persons = x509.load_der_x509_certificate(chain[0])
    root = x509.load_der_x509_certificate(chain[-1])
    half = cert_id(persons, leaf.serial_number)
    half["issuer_key_hash"] = cert_id(root, 1)["issuer_key_hash"]  # our name, another key
    md5 = cert_id(persons, leaf.serial_number)
    md5["hash_algorithm"] = {"algorithm": "md5"}
    for der in (
        request_der(leaf, foreign),
        raw_request([half]),
        raw_request([md5]),
        # Two of our CAs: no single responder may sign for both (RFC 6960 4.2.2.2).
        raw_request([cert_id(persons, leaf.serial_number), cert_id(root, 1)]),
    ):
        answered = post(pki, der)
        assert answered.status_code == 200
        assert status_of(answered.data) == "unauthorized"
        assert answered.data == b"\x30\x03\x0a\x01\x06"  # no responseBytes
        assert answered.headers["Cache-Control"] == "no-store"


# -- nonces --------------------------------------------------------------------------------


def test_a_nonce_is_echoed_in_a_fresh_response(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    issuer = x509.load_der_x509_certificate(chain[0])
    bodies = set()
    for size in (1, 16, 32, 128):
        nonce = os.urandom(size)
        for answered in (
            post(pki, request_der(leaf, issuer, nonce=nonce)),
            get(pki, request_der(leaf, issuer, nonce=nonce)),
        ):
            assert "Cache-Control" not in answered.headers  # for this request only
            response = verified(answered.data, chain[0])
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            assert echoed == nonce
            assert [r.hash_algorithm.name for r in response.responses] == ["sha1"]
            bodies.add(answered.data)
    assert len(bodies) == 8
    assert lint_ocsp(tmp_path, answered.data) == ""


@pytest.mark.parametrize("size", [0, 129, 1000])
def test_nonces_outside_1_to_128_octets_are_malformed(pki: Pki, size: int) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    nonce = {
        "extn_id": "nonce",
        "extn_value": core.OctetString(os.urandom(size)),
    }
    der = raw_request(
        [cert_id(x509.load_der_x509_certificate(chain[0]), leaf.serial_number)],
        request_extensions=[nonce],
    )
    assert status_of(post(pki, der).data) == "malformed_request"


# -- bad input -----------------------------------------------------------------------------


def _bad_requests(issuer: x509.Certificate, serial: int) -> list[Any]:
    good = raw_request([cert_id(issuer, serial)])
    critical = {"extn_id": "1.2.3.4", "critical": True, "extn_value": b"\x05\x00"}
    single_critical = cert_id(issuer, serial)
    single_critical["_single"] = {"single_request_extensions": [critical]}
    nonce = {"extn_id": "nonce", "extn_value": core.OctetString(b"n" * 16)}
    with_nonce = raw_request([cert_id(issuer, serial)], request_extensions=[nonce])
    # extnValue holding an INTEGER where RFC 9654 puts the nonce's OCTET STRING.
    integer_nonce = with_nonce.replace(b"\x04\x12\x04\x10nnnn", b"\x04\x12\x02\x10nnnn")
    assert integer_nonce != with_nonce
    return [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00" * 40, id="zeros"),
        pytest.param(b"not DER at all", id="text"),
        pytest.param(good[:-3], id="truncated"),
        pytest.param(good + b"\x00", id="trailing-byte"),
        pytest.param(raw_request([], version=0), id="empty-request-list"),
        pytest.param(raw_request([cert_id(issuer, serial)], version=1), id="version-2"),
        pytest.param(
            raw_request([cert_id(issuer, serial)], request_extensions=[critical]),
            id="critical-request-extension",
        ),
        pytest.param(raw_request([single_critical]), id="critical-single-extension"),
        pytest.param(
            raw_request([cert_id(issuer, serial)], request_extensions=[nonce, nonce]),
            id="two-nonces",
        ),
        pytest.param(integer_nonce, id="nonce-not-octet-string"),
    ]


def test_bad_requests_are_malformed(pki: Pki) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    for case in _bad_requests(x509.load_der_x509_certificate(chain[0]), leaf.serial_number):
        (der,) = case.values
        for answered in (post(pki, der), get(pki, der)):
            assert answered.status_code == 200, case.id
            assert answered.data == b"\x30\x03\x0a\x01\x01", case.id  # malformedRequest
            assert answered.headers["Cache-Control"] == "no-store"
    client = http(pki)
    paths = ("/ocsp/not*base64", "/ocsp/", "/ocsp/QUJD%ZZ", "/ocsp/%0A", "/ocsp/" + "A" * 12000)
    for path in paths:
        answered = client.get(path)
        assert (answered.status_code, answered.data) == (200, b"\x30\x03\x0a\x01\x01"), path


def test_ber_requests_are_understood(pki: Pki) -> None:
    """Lenient on input: a BER form (here an indefinite length) is read; what we echo
    (the CertID) is re-encoded in DER, so the response stays DER."""
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    good = raw_request([cert_id(x509.load_der_x509_certificate(chain[0]), leaf.serial_number)])
    assert good[1] < 0x80  # a one-octet length, replaced below
    ber = b"\x30\x80" + good[2:] + b"\x00\x00"
    for answered in (post(pki, ber), get(pki, ber)):
        response = verified(answered.data, chain[0])
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == leaf.serial_number


def test_transport_errors_are_http_errors(pki: Pki) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    der = request_der(leaf, x509.load_der_x509_certificate(chain[0]))
    client = http(pki)
    assert post(pki, der, "application/octet-stream").status_code == 415
    assert post(pki, der, "application/json").status_code == 415
    assert post(pki, b"\x30" * 9000).status_code == 413
    assert client.post("/ocsp", data=b"\x30" * 70000, content_type=OCSP_REQUEST).status_code == 413
    assert client.get("/ocsp").status_code == 405
    assert client.put("/ocsp", data=der, content_type=OCSP_REQUEST).status_code == 405
    assert client.post("/ocsp/abc", data=der, content_type=OCSP_REQUEST).status_code == 405


# -- caches and jobs -----------------------------------------------------------------------


def test_a_stale_row_is_never_served(pki: Pki) -> None:
    """A response signed from a status read just before a revocation committed may be
    written after it: the engine compares every row with the current status."""
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    der = request_der(leaf, x509.load_der_x509_certificate(chain[0]))
    assert verified(post(pki, der).data, chain[0]).certificate_status is ocsp.OCSPCertStatus.GOOD
    svc = service(pki)
    good = svc.engine.store.get("persons", serial_hex(leaf.serial_number))
    assert good is not None and len(good.responses) == 2  # SHA-1 and SHA-256 CertIDs
    revoke(api, leaf, reason="keyCompromise")
    # The CA writes no OCSP row: the good row stays until the OCSP side re-signs it, as
    # it would if a late writer had put it back after the revocation.
    assert svc.engine.store.get("persons", serial_hex(leaf.serial_number)) == good
    answer = svc.engine.answer(der, now=datetime.now(UTC))
    assert answer.source == "signed"
    assert verified(answer.body, chain[0]).certificate_status is ocsp.OCSPCertStatus.REVOKED
    again = svc.engine.answer(der, now=datetime.now(UTC))
    assert (again.source, again.body) == ("database", answer.body)
    # Rows that are not what the store writes are re-signed too, never a 500.
    for junk in (b"", b"\x30\x00", b"\x30\x05\x0a\x01\x00", answer.body, b"\x30\x84\xff"):
        with pki.ctx.db.write() as session:
            session.query(OcspResponse).filter_by(serial=serial_hex(leaf.serial_number)).update(
                {"der": junk}
            )
        assert svc.engine.answer(der, now=datetime.now(UTC)).source == "signed", junk


def test_presigning_job_covers_every_certificate(pki: Pki) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    svc = service(pki)
    source = svc.engine.source
    validity = timedelta(hours=24)
    now = datetime.now(UTC)
    presign_due(svc.engine, source, validity, now=now, budget=timedelta(minutes=1))
    for issuer_id in ("root", "persons", "seals"):
        left = source.needing_response(issuer_id, now=now, fresh_until=now + validity / 2, limit=10)
        assert left == [], issuer_id
    assert presign_due(svc.engine, source, validity, now=now, budget=timedelta(minutes=1)) == 0
    answer = svc.engine.answer(
        request_der(leaf, x509.load_der_x509_certificate(chain[0]), hashes.SHA256()),
        now=datetime.now(UTC),
    )
    assert answer.source == "database"
    # Past midlife every response is due again.
    later = now + timedelta(hours=13)
    due = source.needing_response(
        "persons", now=later, fresh_until=later + validity / 2, limit=100_000
    )
    assert leaf.serial_number in due


def test_revoked_responses_are_re_signed_at_once(pki: Pki) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    der = request_der(leaf, x509.load_der_x509_certificate(chain[0]), hashes.SHA256())
    svc = service(pki)
    assert svc.engine.answer(der, now=datetime.now(UTC)).source == "signed"  # now stored
    revoke(api, leaf, reason="cessationOfOperation")
    assert svc.engine.stored_disagrees("persons", leaf.serial_number)  # still says good
    assert resign_revoked(svc.engine, svc.engine.source, now=datetime.now(UTC)) >= 1
    answer = svc.engine.answer(der, now=datetime.now(UTC))
    assert answer.source == "database"
    response = verified(answer.body, chain[0])
    assert response.revocation_reason is x509.ReasonFlags.cessation_of_operation
    assert resign_revoked(svc.engine, svc.engine.source, now=datetime.now(UTC)) == 0


def test_responders_are_renewed_before_they_expire(pki: Pki) -> None:
    api = pki.client("person-lcp")
    leaf, chain = issue_leaf(api)
    der = request_der(leaf, x509.load_der_x509_certificate(chain[0]), nonce=os.urandom(16))
    svc = service(pki)
    now = datetime.now(UTC)
    old = current_signer(pki.ctx.db, ProfileKind.OCSP_RESPONDER, "persons", now)
    assert old is not None
    ctx = pki.ctx
    renew = [ctx, svc.engine]
    assert renew_responders(*renew, now=now) == []  # 30 days left: nothing to do
    # Nineteen days on, less than a third of the 30 days is left. (Dated in the future,
    # the new certificates do not disturb the other tests, which sign "now".)
    later = old.not_after - timedelta(days=9)
    assert renew_responders(*renew, now=later) == ["root", "persons", "seals"]
    new = current_signer(pki.ctx.db, ProfileKind.OCSP_RESPONDER, "persons", later)
    assert new is not None and new.key_label != old.key_label
    response = verified(svc.engine.answer(der, now=later).body, chain[0])
    assert response.certificates[0].public_bytes(serialization.Encoding.DER) == new.certificate
    now_response = verified(svc.engine.answer(der, now=datetime.now(UTC)).body, chain[0])
    assert now_response.certificates[0].public_bytes(serialization.Encoding.DER) == old.certificate
    svc.engine.responders.forget()
