"""Every subscriber profile yields a certificate that pkilint and OpenSSL accept, including the
qualified ones whose issuance waits for HSM-generated keys; broken profiles are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import ConfigError
from pki.lints.prelint import lint_tbs
from pki.profiles import ProfileSet, SubjectKind, load_profile
from pki.subject import subject_emails, subject_name
from pki.tbs import TbsRequest, assemble, build_tbs
from tests.support.builders import LEGAL, NATURAL
from tests.support.judges import etsi_lint, run
from tests.support.pki import Pki

PROFILES = ["person-lcp", "person-qcp-n-qscd", "seal-lcp", "seal-qcp-l-qscd"]


@pytest.mark.parametrize("profile_id", PROFILES)
def test_profile_certificate_passes_the_judges(pki: Pki, tmp_path: Path, profile_id: str) -> None:
    profile = pki.ctx.profiles.get(profile_id)
    issuer = pki.ctx.issuers.get(profile.issuer)
    data = NATURAL if profile.subject_kind is SubjectKind.NATURAL else LEGAL
    spki = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    tbs = build_tbs(
        TbsRequest(
            profile=profile,
            subject=subject_name(
                profile.subject_kind or SubjectKind.NATURAL, "PTESTPROFILE", data["subject"]
            ),
            spki_der=spki,
            serial=x509.random_serial_number(),
            not_before=datetime.now(UTC).replace(microsecond=0),
            policy_oids=profile.policy_oid_list(pki.config.ca.policy_arc),
            issuer=issuer.info,
            subject_alt_emails=subject_emails(data["subject"]),
        ),
        pki.ctx.urls,
    )
    tbs_der = bytes(tbs.dump())
    assert lint_tbs(tbs_der, profile, frozenset()) == []
    der = assemble(
        tbs_der,
        issuer.info.scheme,
        pki.ctx.keys.sign(issuer.key_label, tbs_der, issuer.info.scheme),
    )
    (tmp_path / "leaf.der").write_bytes(der)
    linted = etsi_lint(tmp_path / "leaf.der", profile.etsi_type)
    assert linted.returncode == 0, linted.stdout
    chain = pki.ctx.issuers.chain(profile.issuer)
    pems = [
        x509.load_der_x509_certificate(c).public_bytes(serialization.Encoding.PEM)
        for c in (der, *chain)
    ]
    (tmp_path / "leaf.pem").write_bytes(pems[0])
    (tmp_path / "mid.pem").write_bytes(b"".join(pems[1:-1]))
    (tmp_path / "root.pem").write_bytes(pems[-1])
    verified = run(
        "openssl",
        "verify",
        "-x509_strict",
        "-CAfile",
        tmp_path / "root.pem",
        "-untrusted",
        tmp_path / "mid.pem",
        tmp_path / "leaf.pem",
    )
    assert verified.returncode == 0, verified.stderr


def test_qualified_profile_certificate_carries_the_qc_statements(pki: Pki) -> None:
    profile = pki.ctx.profiles.get("seal-qcp-l-qscd")
    assert profile.qc.compliance and profile.qc.sscd and profile.qc.type == "eseal"
    assert profile.policy_oids == ("0.4.0.194112.1.3",)


BASE = (
    'id = "bad"\ntitle = "t"\nkind = "subscriber"\nsubject_kind = "natural"\nissuer = "persons"\n'
    'validity_days = 10\nkey_algorithms = ["ec-p256"]\npolicy_oids = ["0.4.0.2042.1.3"]\n'
    'identity_methods = ["eid"]\nkey_origins = ["csr"]\n'
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (BASE + 'key_usage = ["non_repudiation"]\n', None),
        (
            BASE + 'key_usage = ["non_repudiation"]\nqscd = true\n',
            "QSCD profile must use key_origins",
        ),
        ('id = "bad"\ncolour = "blue"\n', "unknown key 'colour'"),
        (BASE + 'key_usage = ["key_cert_sign"]\n', "may not sign certificates"),
        ('id = "bad"\nkind = "subscriber"\nkey_algorithms = ["dsa-1024"]\n', "dsa-1024"),
        (
            BASE.replace('"bad"', '"other"') + 'key_usage = ["non_repudiation"]\n',
            "must match the file name",
        ),
    ],
)
def test_broken_profiles_are_refused(tmp_path: Path, text: str, error: str | None) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    if error is None:  # the baseline is valid, so each failure below is the named rule's
        assert load_profile(path).id == "bad"
        return
    with pytest.raises(ConfigError, match=error):
        load_profile(path)


def test_shipped_profiles_load() -> None:
    profiles = ProfileSet.load()
    assert sorted(p.id for p in profiles.subscriber_profiles()) == sorted(PROFILES)
    assert profiles.ca_profiles()[0].issuer == "root"
