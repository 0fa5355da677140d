"""Building blocks for the tests: keys and CSRs, identity proofs, the judges (OpenSSL, pkilint)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from core.hsm.keystore import HsmConfig

BIN = Path(sys.executable).parent


def csr_pem(key: Any = None, cn: str = "Ignored Subject") -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


NATURAL = {
    "subject_kind": "natural",
    "method": "delegated",
    "subject": {
        "given_name": "Jeanne",
        "surname": "Dupont",
        "email": "jeanne.dupont@example.com",
        "country": "FR",
    },
    "document": {
        "type": "id-card",
        "number": "X4RTBPFW4",
        "issuing_country": "FR",
        "expires_on": "2033-05-01",
    },
}

LEGAL = {
    "subject_kind": "legal",
    "method": "registry",
    "subject": {
        "organization_name": "ACME Facturation SAS",
        "common_name": "ACME e-invoicing",
        "organization_identifier": "NTRFR-732829320",
        "country": "FR",
    },
    "document": {
        "type": "company-extract",
        "number": "KBIS-2026-0042",
        "issuing_country": "FR",
        "expires_on": "2030-01-01",
    },
}


def run(
    *args: str | Path, check: bool = False, env_conf: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a judge. ``env_conf`` points SoftHSM2 at a token directory."""
    env = {**os.environ, "SOFTHSM2_CONF": str(env_conf)} if env_conf else None
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=check, env=env
    )


def write_pems(tmp: Path, body: dict[str, Any]) -> tuple[Path, Path, Path]:
    """Leaf, untrusted intermediates and root of an issuance answer, as PEM files."""
    leaf, untrusted, root = tmp / "leaf.pem", tmp / "chain.pem", tmp / "root.pem"
    leaf.write_text(body["certificate"])
    untrusted.write_text("".join(body["chain"][:-1]))
    root.write_text(body["chain"][-1])
    return leaf, untrusted, root


def openssl_verify(tmp: Path, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    leaf, untrusted, root = write_pems(tmp, body)
    return run("openssl", "verify", "-x509_strict", "-CAfile", root, "-untrusted", untrusted, leaf)


def etsi_lint(path: Path, cert_type: str) -> subprocess.CompletedProcess[str]:
    """pkilint's ETSI linter at WARNING: exit status = number of findings (0 = clean)."""
    return run(BIN / "lint_etsi_cert", "lint", "-t", cert_type, "-s", "WARNING", path)


def pkix_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return run(BIN / "lint_pkix_cert", "lint", "-s", "WARNING", path)


def private_key_blocks(hsm: HsmConfig) -> dict[str, str]:
    """`pkcs11-tool --list-objects` of the token's private keys, one text block per label."""
    listing = run(
        "pkcs11-tool",
        "--module",
        hsm.module,
        "--token-label",
        hsm.token_label,
        "--login",
        "--pin",
        hsm.user_pin,
        "--list-objects",
        "--type",
        "privkey",
        env_conf=hsm.softhsm_conf,
    )
    assert listing.returncode == 0, listing.stderr
    blocks = listing.stdout.split("Private Key Object")[1:]
    return {b.split("label:")[1].split("\n")[0].strip(): b for b in blocks}
