"""The JSON bodies of the certificate API, as typed, frozen models.

Each body is read by ``core.http.requests.json_object`` and parsed here by
``core.http.requests.parse`` before the engine sees it: a wrong type, a missing field or an
unknown one is a 422 ``invalid`` problem naming the field. What needs the profiles or the
database (is the profile known, is the proof the client's and verified, does the CSR
suit the profile) is the engine's, with its own problem types. ca/openapi.py takes its
request schemas from these models.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from pki.revocation import REVOCATION_REASONS

# RFC 3339 section 5.6, a zone required ("T" or a space between date and time).
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: object) -> object:
    """Only an RFC 3339 string: pydantic alone would also take a number (as a Unix time)."""
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "date_time_format",
            "must be an RFC 3339 date-time with its time zone, e.g. 2026-01-02T03:04:05Z",
        )
    return value


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _revocation_reason(value: str) -> str:
    if value not in REVOCATION_REASONS:
        raise PydanticCustomError(
            "revocation_reason",
            "must be one of {reasons}",
            {"reasons": ", ".join(REVOCATION_REASONS)},
        )
    return value


NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Moment = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_utc)]
RevocationReason = Annotated[
    str,
    AfterValidator(_revocation_reason),
    Field(json_schema_extra={"enum": list(REVOCATION_REASONS)}),
]


class CertificateRequest(BaseModel):
    """A certificate for a verified identity proof (POST /ca/api/v1/certificates)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Any string: an unknown profile is the engine's 422 unknown-profile, not a type error
    # (the OpenAPI document lists the service's profiles as the enum).
    profile: NonEmpty = Field(description="a subscriber profile the client may use")
    identity_proof: NonEmpty = Field(description="id of a verified identity proof")
    csr: NonEmpty | None = Field(
        default=None,
        description="PEM PKCS#10; its signature proves possession, its subject is ignored "
        "(the subject comes from the proof). Omitted, for a profile whose keys may be "
        "generated in our HSM (required for QSCD profiles): the key pair is generated in "
        "the token and the answer carries the credential_id used by remote signing (CSC API)",
    )


class RevocationRequest(BaseModel):
    """A revocation (POST /ca/api/v1/certificates/{serial}/revoke): final, never reinstated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: RevocationReason = Field(default="unspecified", description="RFC 5280 CRLReason")
    invalidity_date: Moment | None = Field(
        default=None,
        description="when the key is known or suspected to have been compromised "
        "(RFC 5280 5.3.2); not in the future",
    )
