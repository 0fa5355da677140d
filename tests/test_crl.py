"""CRLs: built from a DER template, signed in the HSM, numbered, stored, audited and served.

Judged by OpenSSL (`openssl crl -verify`, `openssl verify -crl_check`) and pkilint
(`lint_crl`), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import crl as acrl
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import delete, select
from werkzeug.test import Client as WsgiClient

from core import audit
from core.hsm.algorithms import HashAlgorithm, Padding, SignatureScheme
from core.jobs import JobRunner
from core.store.models import AuditEvent, Crl, JobLock
from crl.app import create_app as create_crl_app
from crl.app import register_app_jobs
from crl.builder import OID_EXPIRED_CERTS_ON_CRL, CrlFields, RevokedEntries, sign_crl
from crl.publisher import FULL, CrlPublisher
from crl.schedule import PUBLISH_JOB, REVOCATIONS_JOB, register_jobs
from pki.revocation import REVOCATION_REASONS
from tests.support.crl import ca_der, fetch_crl
from tests.support.issuance import issue, revoke
from tests.support.judges import lint_crl, openssl_crl_verify, openssl_verify_with_crl
from tests.support.pki import Pki
from tests.support.rows import insert_certificate

CA_IDS = ("root", "persons", "seals")


# -- helpers ---------------------------------------------------------------------------------


def entry(crl: x509.CertificateRevocationList, serial: str) -> x509.RevokedCertificate | None:
    return crl.get_revoked_certificate_by_serial_number(int(serial, 16))


def crl_number(der: bytes) -> int:
    value = x509.load_der_x509_crl(der).extensions.get_extension_for_class(x509.CRLNumber).value
    return value.crl_number


# -- the DER template ---------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
ENTRY_CASES = [
    pytest.param("ff" * 20, NOW, "keyCompromise", NOW - timedelta(days=2), id="20-octet-high-bit"),
    pytest.param("abc", NOW, "superseded", None, id="odd-hex-digits"),
    pytest.param("1", NOW, "unspecified", None, id="unspecified-no-extension"),
    pytest.param("7f", NOW, None, None, id="no-reason"),
    pytest.param("80", datetime(2050, 1, 1, tzinfo=UTC), "cACompromise", None, id="year-2050"),
    pytest.param("42", datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), None, None, id="2049"),
    pytest.param("43", NOW.replace(microsecond=999_999), "privilegeWithdrawn", NOW, id="fraction"),
]


@pytest.mark.parametrize(("serial", "revoked", "reason", "invalidity"), ENTRY_CASES)
def test_entry_template_is_the_der_asn1crypto_would_write(
    serial: str, revoked: datetime, reason: str | None, invalidity: datetime | None
) -> None:
    entries = RevokedEntries()
    entries.add(serial, revoked, reason, invalidity)
    extensions = []
    if reason not in {None, "unspecified"}:
        # RFC 5280 section 5.3.1: reasonCode, but never the unspecified value.
        code = REVOCATION_REASONS[reason]
        extensions.append({"extn_id": "crl_reason", "critical": False, "extn_value": code})
    if invalidity is not None:
        extensions.append(
            {"extn_id": "invalidity_date", "critical": False, "extn_value": invalidity}
        )
    whole_seconds = revoked.replace(microsecond=0)
    time_choice = "utc_time" if revoked.year < 2050 else "general_time"
    expected: dict[str, Any] = {
        "user_certificate": int(serial, 16),
        "revocation_date": ax509.Time({time_choice: whole_seconds}),
    }
    if extensions:
        expected["crl_entry_extensions"] = extensions
    assert bytes(entries.der) == acrl.RevokedCertificate(expected).dump()


def _software_signed(entries: RevokedEntries, scope_url: str | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    fields = CrlFields(
        issuer=ax509.Name.build({"country_name": "FR", "common_name": "Test CA"}),
        key_id=b"\x07" * 20,
        scheme=SignatureScheme(HashAlgorithm.SHA384, Padding.ECDSA),
        number=(1 << 62) + 1,
        this_update=NOW,
        next_update=NOW + timedelta(hours=24),
        scope_url=scope_url,
        expired_certs_since=NOW - timedelta(days=365),
    )
    der = bytes(
        sign_crl(fields, entries, lambda d: key.sign(d, ec.ECDSA(Prehashed(hashes.SHA384()))))
    )
    assert x509.load_der_x509_crl(der).is_signature_valid(key.public_key())
    return der


def test_empty_crl_omits_revoked_certificates_and_entries_sign_once() -> None:
    entries = RevokedEntries()
    der = _software_signed(entries)
    parsed = acrl.CertificateList.load(der)
    # RFC 5280 section 5.1.2.6: absent (None), not an empty SEQUENCE ([]).
    assert parsed["tbs_cert_list"]["revoked_certificates"].native is None
    assert parsed["tbs_cert_list"].dump(force=True) == parsed["tbs_cert_list"].dump()
    with pytest.raises(ValueError, match="already signed"):
        _software_signed(entries)


def test_signed_crl_round_trips_with_partition_extension() -> None:
    entries = RevokedEntries()
    for n in range(1, 300):  # long enough for multi-octet lengths everywhere
        entries.add(format(n * 0x1F2E3D4C5B, "x"), NOW, "superseded", None)
    url = "http://pki.example.com/crl/persons-3.crl"
    der = _software_signed(entries, url)
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == 299
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical  # RFC 5280 section 5.2.5
    assert idp.value.full_name == [x509.UniformResourceIdentifier(url)]
    parsed = acrl.CertificateList.load(der)
    assert parsed.dump(force=True) == der  # canonical DER all the way down


# -- publication, judged by OpenSSL and pkilint ---------------------------------------------


def test_every_ca_publishes_a_crl_that_verifies_and_lints(pki: Pki, tmp_path: Path) -> None:
    published = CrlPublisher(pki.ctx).publish_all(datetime.now(UTC))
    assert {(p.issuer_id, p.shard) for p in published} >= {(i, FULL) for i in CA_IDS}
    http = WsgiClient(pki.app)
    for issuer_id in CA_IDS:
        der = fetch_crl(http, issuer_id)
        issuer_der = ca_der(http, issuer_id)
        assert "verify OK" in openssl_crl_verify(tmp_path, der, issuer_der)
        # The root's CRL is an ARL (it lists CA certificates).
        code, findings = lint_crl(tmp_path, der, "ARL" if issuer_id == "root" else "CRL")
        assert code == 0, findings

        crl = x509.load_der_x509_crl(der)
        ca = x509.load_der_x509_certificate(issuer_der)
        assert crl.issuer.public_bytes() == ca.subject.public_bytes()
        hours = 168 if issuer_id == "root" else 24
        assert crl.next_update_utc is not None  # RFC 5280 section 5.1.2.5: always present
        assert crl.next_update_utc - crl.last_update_utc == timedelta(hours=hours)
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
        # A complete CRL: no issuingDistributionPoint.
        with pytest.raises(x509.ExtensionNotFound):
            crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        expired = crl.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(OID_EXPIRED_CERTS_ON_CRL)
        )
        assert not expired.critical and isinstance(expired.value, x509.UnrecognizedExtension)
        since = ca.not_valid_before_utc.strftime("%Y%m%d%H%M%SZ").encode()
        assert expired.value.value == b"\x18\x0f" + since  # GeneralizedTime

    # Every CRL is kept and audited, the audit event naming its digest.
    with pki.ctx.db.read() as session:
        numbers = {
            p.number for p in session.scalars(select(Crl).where(Crl.issuer_id == "persons")).all()
        }
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "crl.published")
        ).all()
        assert {p.number for p in published if p.issuer_id == "persons"} <= numbers
        assert {p.number for p in published} <= {e.details["number"] for e in events}
        _, broken = audit.verify_chain(session)
        assert broken is None


def test_revocation_reaches_the_crl(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-lcp")
    publisher = CrlPublisher(pki.ctx)
    cert = issue(api)
    publisher.publish_changed(datetime.now(UTC))  # whatever other tests left unpublished
    before = fetch_crl(api.http, "persons")
    code, out = openssl_verify_with_crl(tmp_path, cert["certificate"], cert["chain"], before)
    assert code == 0, out

    revoke(api, cert["serial"], "keyCompromise", "2026-01-02T03:04:05Z")
    other = issue(api)
    revoke(api, other["serial"], "unspecified")
    # Which scopes it republishes is checked in test_crl_shards (a database of its own; here
    # a scheduler that another test left running may get there first).
    publisher.publish_changed(datetime.now(UTC))
    assert publisher.publish_changed(datetime.now(UTC)) == []  # nothing new since

    after = fetch_crl(api.http, "persons")
    assert crl_number(after) > crl_number(before)
    code, out = openssl_verify_with_crl(tmp_path, cert["certificate"], cert["chain"], after)
    assert code != 0 and "certificate revoked" in out, out
    crl = x509.load_der_x509_crl(after)
    revoked = entry(crl, cert["serial"])
    assert revoked is not None
    reason = revoked.extensions.get_extension_for_class(x509.CRLReason)
    assert reason.value.reason is x509.ReasonFlags.key_compromise and not reason.critical
    invalidity = revoked.extensions.get_extension_for_class(x509.InvalidityDate)
    assert invalidity.value.invalidity_date_utc == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    unspecified = entry(crl, other["serial"])
    assert unspecified is not None and len(unspecified.extensions) == 0
    code, findings = lint_crl(tmp_path, after, "CRL")
    assert code == 0, findings


def test_expired_revoked_certificates_stay_listed(pki: Pki) -> None:
    """EN 319 411-2 CSS-6.3.10-03: kept after expiry, as expiredCertsOnCRL announces."""
    serial = format(secrets.randbits(150) | 1 << 149, "x")
    long_ago = datetime(2025, 1, 1, tzinfo=UTC)
    insert_certificate(
        pki,
        since=long_ago,
        days=30,
        issuer_id="seals",
        serial=serial,
        profile="seal-lcp",
        status="revoked",
        subject="CN=expired",
        revoked_at=long_ago + timedelta(days=1),
        revocation_reason="cessationOfOperation",
    )
    publisher = CrlPublisher(pki.ctx)
    publisher.publish(pki.ctx.issuers.get("seals"), FULL, now=datetime.now(UTC))
    crl = x509.load_der_x509_crl(fetch_crl(WsgiClient(pki.app), "seals"))
    listed = entry(crl, serial)
    assert listed is not None
    assert listed.revocation_date_utc == long_ago + timedelta(days=1)


# -- numbers ------------------------------------------------------------------------------


def _persons_crls(pki: Pki, since_id: int) -> list[Crl]:
    with pki.ctx.db.read() as session:
        return list(
            session.scalars(
                select(Crl)
                .where(Crl.issuer_id == "persons", Crl.shard == FULL, Crl.id > since_id)
                .order_by(Crl.id)
            ).all()
        )


def _last_crl_id(pki: Pki) -> int:
    with pki.ctx.db.read() as session:
        return session.scalar(select(Crl.id).order_by(Crl.id.desc()).limit(1)) or 0


def test_numbers_strictly_increase_when_instances_race(pki: Pki) -> None:
    start = _last_crl_id(pki)
    persons = pki.ctx.issuers.get("persons")
    instances = [CrlPublisher(pki.ctx, actor=f"system:crl-{n}") for n in range(4)]

    def publish_three(publisher: CrlPublisher) -> None:
        for _ in range(3):
            publisher.publish(persons, FULL, now=datetime.now(UTC))

    threads = [threading.Thread(target=publish_three, args=(p,)) for p in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A clock an hour behind still numbers after the others, never before.
    late = instances[0].publish(persons, FULL, now=datetime.now(UTC) - timedelta(hours=1))
    assert late is not None

    rows = _persons_crls(pki, start)  # ours, and any other instance's meanwhile
    assert len(rows) >= 13
    numbers = [r.number for r in rows]  # in the order they were stored
    assert all(a < b for a, b in itertools.pairwise(numbers)), numbers
    assert all(a.this_update <= b.this_update for a, b in itertools.pairwise(rows))
    assert all(crl_number(r.der) == r.number for r in rows)
    assert late.number in numbers and late.number.bit_length() <= 159  # RFC 5280 5.2.3


def test_a_slow_instance_never_publishes_an_older_state_after_a_newer(pki: Pki) -> None:
    api = pki.client("person-lcp")
    persons = pki.ctx.issuers.get("persons")
    slow, fast = CrlPublisher(pki.ctx), CrlPublisher(pki.ctx)
    snapshot = slow.read(persons, FULL)  # read, then stalls before signing
    cert = issue(api)
    revoke(api, cert["serial"], "superseded")
    fresh = fast.publish(persons, FULL, now=datetime.now(UTC))
    assert fresh is not None and fresh.status_epoch > snapshot.epoch
    assert slow.store(persons, FULL, snapshot, now=datetime.now(UTC)) is None
    served = x509.load_der_x509_crl(fetch_crl(api.http, "persons"))
    assert entry(served, cert["serial"]) is not None
    assert served.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == (
        fresh.number
    )


# -- serving ------------------------------------------------------------------------------


def test_crl_http_caching(pki: Pki) -> None:
    http = WsgiClient(pki.app)
    published = CrlPublisher(pki.ctx).publish(
        pki.ctx.issuers.get("persons"), FULL, now=datetime.now(UTC)
    )
    assert published is not None
    resp = http.get("/crl/persons.crl")
    assert resp.status_code == 200 and resp.mimetype == "application/pkix-crl"
    assert crl_number(resp.data) == published.number
    assert resp.cache_control.public
    max_age = resp.cache_control.max_age
    assert max_age is not None
    until_next = (published.next_update - datetime.now(UTC)).total_seconds()
    assert until_next - 5 <= max_age <= until_next + 1
    assert resp.expires == published.next_update
    assert resp.last_modified == published.this_update
    etag = resp.headers["ETag"]

    again = http.get("/crl/persons.crl", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert http.head("/crl/persons.crl").headers["ETag"] == etag

    newer = CrlPublisher(pki.ctx).publish(
        pki.ctx.issuers.get("persons"), FULL, now=datetime.now(UTC)
    )
    assert newer is not None
    fresh = http.get("/crl/persons.crl", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["ETag"] != etag
    assert crl_number(fresh.data) == newer.number
    # The CA certificates stay where AIA caIssuers points.
    assert http.get("/certs/persons.crt").mimetype == "application/pkix-cert"


@pytest.mark.parametrize(
    "path",
    [
        "/crl/nobody.crl",
        "/crl/persons-1.crl",  # not sharded here: no such partition
        "/crl/persons-01.crl",
        "/crl/persons--1.crl",
        "/crl/persons-99999999999999999999.crl",
        "/crl/persons-\u0661.crl",  # an Arabic-Indic digit one
        "/crl/.crl",
        "/crl/persons",
        "/certs/nobody.crt",
    ],
)
def test_unknown_crls_are_404_problems(pki: Pki, path: str) -> None:
    resp = WsgiClient(pki.app).get(path)
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"


# -- the jobs -------------------------------------------------------------------------------


@pytest.fixture
def free_crl_leases(pki: Pki) -> Iterator[None]:
    """The job leases are shared by the session's database: start and end without any."""

    def clear() -> None:
        with pki.ctx.db.write() as session:
            session.execute(delete(JobLock).where(JobLock.name.in_([PUBLISH_JOB, REVOCATIONS_JOB])))

    clear()
    yield
    clear()


@pytest.mark.slow  # a running scheduler, waited on
@pytest.mark.usefixtures("free_crl_leases")
def test_the_running_service_publishes_a_revocation_at_once(pki: Pki) -> None:
    app = create_crl_app(pki.ctx)
    runner = JobRunner(pki.ctx.db)
    register_app_jobs(runner, app)
    runner.start()
    try:
        api = pki.client("person-lcp")
        cert = issue(api)
        revoke(api, cert["serial"], "affiliationChanged")
        revoked_at = time.monotonic()
        http = WsgiClient(app)
        while time.monotonic() - revoked_at < 10:
            if entry(x509.load_der_x509_crl(fetch_crl(http, "persons")), cert["serial"]):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the revocation did not reach the CRL within 10 s")
        # One check per second, then the build: well within a few seconds.
        assert time.monotonic() - revoked_at < 5
    finally:
        runner.scheduler.shutdown(wait=True)


@pytest.mark.slow  # waits for several scheduler ticks
@pytest.mark.usefixtures("free_crl_leases")
def test_two_schedulers_publish_one_crl_per_tick(pki: Pki) -> None:
    """Two instances, one database: at each tick of the publication job exactly one of
    them publishes (the lease, core.jobs), never both, never none."""
    tick = 2
    config = replace(pki.config.crl, publish_interval_seconds=tick)
    CrlPublisher(pki.ctx).publish_all(datetime.now(UTC))  # nothing left to catch up
    start = _last_crl_id(pki)
    runners = []
    for name in ("a", "b"):
        runner = JobRunner(pki.ctx.db, holder=f"instance-{name}")
        register_jobs(runner, CrlPublisher(pki.ctx, actor=f"system:crl-publisher-{name}"), config)
        runners.append(runner)
    for runner in runners:
        runner.start()
    time.sleep(3 * tick + 0.5)
    for runner in runners:
        runner.scheduler.shutdown(wait=True)

    with pki.ctx.db.read() as session:
        rows = session.scalars(select(Crl).where(Crl.id > start).order_by(Crl.id)).all()
        actors = {
            (e.details["issuer"], e.details["shard"], e.details["number"]): e.actor
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.action == "crl.published")
            ).all()
        }
    by_scope: dict[tuple[str, int], list[Crl]] = {}
    for row in rows:
        by_scope.setdefault((row.issuer_id, row.shard), []).append(row)
    assert set(by_scope) >= {(i, FULL) for i in CA_IDS}
    # Three ticks fit in the time; a machine loaded enough to make both schedulers miss one
    # (APScheduler drops a tick over a second late) publishes less, never more, and every
    # scope the same number of times.
    counts = {len(crls) for crls in by_scope.values()}
    assert len(counts) == 1 and 2 <= min(counts) <= 3, {k: len(v) for k, v in by_scope.items()}
    ticks = counts.pop()
    for crls in by_scope.values():
        # One publication per tick: successive CRLs of a scope are a tick apart.
        gaps = [(b.created_at - a.created_at).total_seconds() for a, b in itertools.pairwise(crls)]
        assert all(gap > tick * 0.75 for gap in gaps), gaps
    # Within a tick, every CRL comes from one instance.
    for n in range(ticks):
        tick_rows = [crls[n] for crls in by_scope.values()]
        publishers = {
            actors[r.issuer_id, None if r.shard == FULL else r.shard, r.number] for r in tick_rows
        }
        assert len(publishers) == 1, publishers
