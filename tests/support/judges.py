"""Other people's tools judging what we produce: OpenSSL (`verify`, `crl`), pkilint's
linters (certificates, CRLs, OCSP responses) and `pkcs11-tool` for key attributes. Each
returns what the tool said; the test decides."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from core.hsm.keystore import HsmConfig

BIN = Path(sys.executable).parent  # the virtual environment's scripts: sceau, pkilint's lint_*


def run(
    *args: str | Path, check: bool = False, env_conf: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a judge. ``env_conf`` points SoftHSM2 at a token directory."""
    env = {**os.environ, "SOFTHSM2_CONF": str(env_conf)} if env_conf else None
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=check, env=env
    )


# -- certificates ---------------------------------------------------------------------------


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


# -- CRLs -----------------------------------------------------------------------------------


def pem_file(path: Path, *ders: bytes, kind: str = "CERTIFICATE") -> Path:
    """DER certificates (or CRLs, ``kind="CRL"``) written as one PEM file."""
    if kind == "CERTIFICATE":
        text = "".join(
            x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM).decode() for d in ders
        )
    else:
        text = "".join(x509.load_der_x509_crl(d).public_bytes(Encoding.PEM).decode() for d in ders)
    path.write_text(text)
    return path


def openssl_crl_verify(tmp: Path, crl_der: bytes, issuer_der: bytes) -> str:
    """`openssl crl -verify`: what it says ("verify OK" or the failure)."""
    crl_path = tmp / f"crl-{secrets.token_hex(4)}.der"
    crl_path.write_bytes(crl_der)
    cafile = pem_file(tmp / "ca-for-crl.pem", issuer_der)
    done = run(
        "openssl", "crl", "-inform", "DER", "-in", crl_path, "-CAfile", cafile, "-verify", "-noout"
    )
    return done.stdout + done.stderr


def openssl_verify_with_crl(
    tmp: Path, leaf_pem: str, chain: list[str], crl_der: bytes
) -> tuple[int, str]:
    """`openssl verify -crl_check` of a leaf against the CRL of its issuer."""
    leaf, untrusted, root = tmp / "leaf.pem", tmp / "untrusted.pem", tmp / "root.pem"
    leaf.write_text(leaf_pem)
    untrusted.write_text("".join(chain[:-1]))
    root.write_text(chain[-1])
    crl_pem = pem_file(tmp / "crl.pem", crl_der, kind="CRL")
    done = run(
        "openssl",
        "verify",
        "-crl_check",
        "-CAfile",
        root,
        "-untrusted",
        untrusted,
        "-CRLfile",
        crl_pem,
        leaf,
    )
    return done.returncode, done.stdout + done.stderr


def lint_crl(tmp: Path, crl_der: bytes, kind: str) -> tuple[int, str]:
    """pkilint at WARNING under the PKIX profile: exit status = number of findings."""
    path = tmp / f"lint-{secrets.token_hex(4)}.crl"
    path.write_bytes(crl_der)
    done = run(BIN / "lint_crl", "lint", "-t", kind, "-p", "PKIX", "-s", "WARNING", path)
    return done.returncode, done.stdout


# -- OCSP -----------------------------------------------------------------------------------


def lint_ocsp(tmp_path: Path, body: bytes) -> str:
    """pkilint's OCSP findings at WARNING and above ("" when clean)."""
    path = tmp_path / f"{hashlib.sha256(body).hexdigest()[:12]}.der"
    path.write_bytes(body)
    done = run(BIN / "lint_ocsp_response", "lint", "-s", "WARNING", path)
    return "" if done.returncode == 0 else done.stdout + done.stderr
