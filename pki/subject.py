"""Subject names from verified identity proofs (never from a CSR).

EN 319 412-2 clause 4.2.4 (natural persons) and EN 319 412-3 clause 4.2.1 (legal persons).
"""

from __future__ import annotations

from typing import Any

from asn1crypto import x509

from core.errors import ErrorKind, SceauError
from pki.profiles import SubjectKind


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SceauError(ErrorKind.PROOF_NOT_USABLE, f"identity proof lacks {key}")
    return value.strip()


def subject_name(kind: SubjectKind, proof_id: str, subject: dict[str, Any]) -> x509.Name:
    if kind is SubjectKind.NATURAL:
        given, surname = _text(subject, "given_name"), _text(subject, "surname")
        return x509.Name.build(
            {
                "country_name": _text(subject, "country"),
                "given_name": given,
                "surname": surname,
                # NAT-4.2.4-15: CN holds a name of the subject.
                "common_name": f"{given} {surname}",
                # NAT-4.2.4-2/-13: two people may share a name; the proof id keeps the DN
                # unique at this CA without publishing a document number.
                "serial_number": proof_id,
            }
        )
    organization = _text(subject, "organization_name")
    return x509.Name.build(
        {
            "country_name": _text(subject, "country"),
            "organization_name": organization,  # LEG-4.2.1-5: full registered name
            "organization_identifier": _text(subject, "organization_identifier"),
            # LEG-4.2.1-8: the name commonly used, defaulting to the registered one.
            "common_name": str(subject.get("common_name") or organization),
        }
    )


def subject_emails(subject: dict[str, Any]) -> tuple[str, ...]:
    email = subject.get("email")
    return (email,) if isinstance(email, str) and email else ()
