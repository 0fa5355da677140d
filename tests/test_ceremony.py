"""The development key ceremony: keys inside the token, non-extractable; idempotent."""

from __future__ import annotations

import os
from pathlib import Path

from core.store.models import Issuer
from sceau.ceremony import ca_key_label
from tests.support.judges import private_key_blocks, run
from tests.support.pki import Pki, make_home


def test_ca_keys_are_sensitive_and_never_extractable(pki: Pki) -> None:
    for issuer in ("root", "persons", "seals"):
        facts = pki.ctx.keys.key_facts(ca_key_label(issuer))
        assert facts.sensitive and facts.never_extractable and facts.always_sensitive
        assert not facts.extractable
    labels = private_key_blocks(pki.config.hsm)
    for issuer in ("root", "persons", "seals"):
        block = labels[ca_key_label(issuer)]
        assert "sensitive" in block and "never extractable" in block
        assert "extractable" not in block.replace("never extractable", "")


def test_second_init_changes_nothing(pki: Pki, softhsm_conf: Path) -> None:
    with pki.ctx.db.read() as session:
        before = {i.id: i.certificate for i in session.query(Issuer).all()}
    config, ceremony = make_home(
        pki.home, softhsm_conf, pki.config.database.url, pki.config.hsm.token_label
    )
    assert ceremony == []
    with pki.ctx.db.read() as session:
        after = {i.id: i.certificate for i in session.query(Issuer).all()}
    assert after == before and set(after) == {"root", "persons", "seals"}
    secrets_file = pki.home / "secrets.toml"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert config.hsm.user_pin not in (pki.home / "sceau.toml").read_text()
    assert os.stat(pki.home).st_mode & 0o077 == 0


def test_signer_certificates(pki: Pki, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from pki.profiles import ProfileKind
    from pki.signers import current_signer
    from tests.support.judges import pkix_lint

    now = datetime.now(UTC)
    root = pki.ctx.issuers.get("root").certificate
    (tmp_path / "root.pem").write_bytes(
        x509.load_der_x509_certificate(root).public_bytes(Encoding.PEM)
    )
    cases = [(ProfileKind.TSU, "root", ExtendedKeyUsageOID.TIME_STAMPING, "timestampsign")]
    cases += [
        (ProfileKind.OCSP_RESPONDER, ca, ExtendedKeyUsageOID.OCSP_SIGNING, "ocsphelper")
        for ca in ("root", "persons", "seals")
    ]
    for kind, issuer_id, eku, purpose in cases:
        signer = current_signer(pki.ctx.db, kind, issuer_id, now)
        assert signer is not None, (kind, issuer_id)
        facts = pki.ctx.keys.key_facts(signer.key_label)
        assert facts.never_extractable and facts.sensitive
        cert = x509.load_der_x509_certificate(signer.certificate)
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        assert list(ext.value) == [eku]
        assert ext.critical == (kind is ProfileKind.TSU)  # RFC 3161 section 2.3
        if kind is ProfileKind.OCSP_RESPONDER:
            cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
            assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 30
        path = tmp_path / f"{kind}-{issuer_id}.der"
        path.write_bytes(signer.certificate)
        assert pkix_lint(path).returncode == 0, pkix_lint(path).stdout
        chain = [pki.ctx.issuers.get(issuer_id).certificate] if issuer_id != "root" else []
        (tmp_path / "mid.pem").write_bytes(
            b"".join(x509.load_der_x509_certificate(c).public_bytes(Encoding.PEM) for c in chain)
        )
        (tmp_path / "leaf.pem").write_bytes(cert.public_bytes(Encoding.PEM))
        args = [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-CAfile",
            tmp_path / "root.pem",
        ]
        if chain:
            args += ["-untrusted", tmp_path / "mid.pem"]
        verified = run(*args, tmp_path / "leaf.pem")
        assert verified.returncode == 0, (kind, issuer_id, verified.stderr)
