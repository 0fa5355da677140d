"""What the tests send: identity-proof bodies, keys and CSRs, and the odd certificate of a
CA that is not ours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# -- identity proofs --------------------------------------------------------------------------

# The smallest proofs each kind of subject needs: a natural person vouched for by the
# platform (delegated: verified at once), a legal person from a registry (pending until an
# officer approves it).
NATURAL: dict[str, Any] = {
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

LEGAL: dict[str, Any] = {
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

# Distinctive values: the raw-table test looks for each of them in every column.
NATURAL_FULL: dict[str, Any] = {
    "subject_kind": "natural",
    "method": "face-to-face",
    "subject": {
        "given_name": "Apolline",
        "surname": "Zephyrin-Quesnel",
        "birth_date": "1987-04-23",
        "birth_place": "Quimperlé",
        "email": "apolline.zq@example.org",
        "mobile": "+33 6 12 34 56 78",
        "nationality": "FR",
        "country": "FR",
    },
    "document": {
        "type": "passport",
        "number": "19QX77341",
        "issuing_country": "FR",
        "issuing_authority": "Préfecture du Finistère",
        "expires_on": "2031-09-30",
    },
}

LEGAL_FULL: dict[str, Any] = {
    "subject_kind": "legal",
    "method": "registry",
    "subject": {
        "organization_name": "Boulangerie Kervella SARL",
        "organization_identifier": "NTRFR-732829320",
        "registered_address": "12 rue de Siam, 29200 Brest",
        "email": "contact@kervella.example",
        "country": "FR",
    },
    "document": {
        "type": "company-extract",
        "number": "KBIS-2026-77120",
        "issuing_country": "FR",
        "expires_on": "2030-01-01",
    },
    "representative": {
        "given_name": "Maëlys",
        "surname": "Kervella",
        "birth_date": "1979-11-02",
        "email": "maelys@kervella.example",
        "role": "gérante",
        "document": {
            "type": "id-card",
            "number": "T7K2M9QPL",
            "issuing_country": "FR",
            "expires_on": "2032-02-02",
        },
        "mandate": {"type": "registry-listing", "reference": "RCS Brest 732 829 320"},
    },
}


# -- keys, CSRs, certificates -------------------------------------------------------------------


def csr_pem(key: Any = None, cn: str = "Ignored Subject") -> str:
    """A CSR, signed by ``key`` (a fresh P-256 key by default). Its subject is ignored by
    issuance: the subject comes from the identity proof."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def foreign_ca(common_name: str) -> x509.Certificate:
    """A self-signed P-256 certificate valid for a day: a CA that is not ours."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
