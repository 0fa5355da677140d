"""The JSON bodies the registration authority accepts, as typed, frozen models.

``POST /ra/api/v1/identity-proofs`` is read by ``core.http.requests`` and parsed into an
:class:`IdentityProofRequest` before any engine sees it: types, required fields, lengths,
enumerations and unknown fields are declared here, and a failure is a 422 problem naming
the field. What needs the clock or the database (an unexpired document, a birth date in
the past, a profile that accepts a delegated proof, the client's webhook secret) is
checked by the engine, registration/proofs.py. The RA's OpenAPI document
(registration/openapi.py) takes its request schemas from these models.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Annotated, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pki.profiles import DOCUMENT_TYPES, ProofMethod
from registration.identifiers import ORG_ID, check_organization_identifier

NAME_MAX = 128  # the CPS caps names here (EN 319 411-1 OVR-5.2-11)
ADDRESS_MAX = 256
URL_MAX = 512  # the webhook_url column
COUNTRY = r"^[A-Z]{2}$"  # ISO 3166-1 alpha-2, as the certificate's countryName wants it
EMAIL = r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$"
MOBILE = r"^\+[1-9][0-9]{6,14}$"  # E.164, as SMS gateways want it
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _printable(value: str) -> str:
    """Control characters, and the bidirectional overrides that would make a name display
    differently from what it is (an officer reads these), are refused. HTML or script is
    kept as data: every reader escapes."""
    if any(unicodedata.category(c) in {"Cc", "Cs", "Co"} or c in BIDI_CONTROLS for c in value):
        raise PydanticCustomError(
            "unprintable", "control characters and bidirectional overrides are not allowed"
        )
    return value


def _calendar_date(value: object) -> object:
    """Only YYYY-MM-DD: pydantic alone would also take a number or a digit string (as a
    Unix time), which a typo turns into a wrong date that passes."""
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value.strip()):
        raise PydanticCustomError("date_format", "must be a date, YYYY-MM-DD")
    return value.strip()


def _without_spaces(value: object) -> object:
    return value.replace(" ", "") if isinstance(value, str) else value


def _document_type(value: str) -> str:
    if value not in DOCUMENT_TYPES:
        raise PydanticCustomError(
            "document_type", "must be one of {types}", {"types": ", ".join(DOCUMENT_TYPES)}
        )
    return value


def _webhook_url(url: str) -> str:
    """Where the decision is POSTed: https, or http on the loopback for development. No
    credentials in the URL: the callback is authenticated by its signature."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise PydanticCustomError("webhook_url", "is not a valid URL") from None
    if (
        not host
        or parts.username is not None
        or parts.fragment
        or any(ord(c) <= 32 for c in url)
        or not (parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK))
    ):
        raise PydanticCustomError(
            "webhook_url",
            "must be an https URL (http only on the loopback) without credentials or fragment",
        )
    return url


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX),
    AfterValidator(_printable),
]
Address = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=ADDRESS_MAX),
    AfterValidator(_printable),
]
Country = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=COUNTRY),
    Field(description="ISO 3166-1 alpha-2 code, in capitals"),
]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=NAME_MAX, pattern=EMAIL),
    AfterValidator(_printable),  # the pattern's [^@\s] still lets control characters in
]
Mobile = Annotated[
    str,
    StringConstraints(pattern=MOBILE),
    BeforeValidator(_without_spaces),
    Field(description="international number (E.164), e.g. +33612345678; spaces are dropped"),
]
CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]
DocumentType = Annotated[
    str, AfterValidator(_document_type), Field(json_schema_extra={"enum": list(DOCUMENT_TYPES)})
]
WebhookUrl = Annotated[str, StringConstraints(max_length=URL_MAX), AfterValidator(_webhook_url)]


class RequestModel(BaseModel):
    """Every part of a request: immutable once parsed, and an unknown field is an error
    (a misspelt optional field would otherwise vanish without a word)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Person(RequestModel):
    """Attributes of a natural person, wherever one appears (subject, representative)."""

    given_name: Text
    surname: Text
    birth_date: CalendarDate | None = Field(default=None, description="after 1900, in the past")
    birth_place: Text | None = None
    email: Email | None = None
    mobile: Mobile | None = None


class NaturalSubject(Person):
    """The natural person the certificate will name."""

    nationality: Country | None = None
    country: Country


class LegalSubject(RequestModel):
    """The legal person the seal certificate will name."""

    # Declared before the identifier: its validator compares the two.
    country: Country
    organization_name: Text = Field(description="full registered name")
    organization_identifier: str = Field(
        description="EN 319 412-1 5.1.4, e.g. NTRFR-<SIREN>, VATFR-<key><SIREN>, "
        "LEIXG-<LEI>; check digits are verified",
        json_schema_extra={"pattern": ORG_ID.pattern},
    )
    common_name: Text | None = Field(default=None, description="defaults to organization_name")
    email: Email | None = None
    registered_address: Address | None = None

    @field_validator("organization_identifier")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        country = info.data.get("country")
        if country is None:
            return value  # the country's own error is reported
        try:
            return check_organization_identifier(value.strip(), country)
        except ValueError as exc:
            raise PydanticCustomError("organization_identifier", str(exc)) from None


class IdentityDocument(RequestModel):
    """The identity document the proof rests on (REG-6.4.5-04: type, number, issuer)."""

    type: DocumentType
    number: Text = Field(description="kept by the RA, never shown back to the platform")
    issuing_country: Country
    issuing_authority: Text | None = None
    expires_on: CalendarDate = Field(description="in the future")


class Mandate(RequestModel):
    """How the representative's authority was shown (TS 119 461 9.4, BIN-8.4.5)."""

    type: Literal["registry-listing", "power-of-attorney", "board-resolution"]
    reference: Text | None = None


class Representative(Person):
    """The natural person acting for a legal person (TS 119 461 9.4)."""

    nationality: Country | None = None
    role: Text | None = None
    document: IdentityDocument | None = None
    mandate: Mandate


class EidMeans(RequestModel):
    """The notified eID means of an eid proof, and its eIDAS level (art. 8): the levels a
    qualified certificate may rest on."""

    scheme: Text
    level: Literal["substantial", "high"]


class ProofFields(RequestModel):
    """What every identity proof carries, whoever its subject is."""

    method: ProofMethod = Field(
        description="delegated: the platform vouches (verified at once when one of its "
        "profiles accepts it); the others wait for an officer"
    )
    document: IdentityDocument
    eid: EidMeans | None = Field(default=None, description="for method eid, and only for it")
    webhook_url: WebhookUrl | None = Field(
        default=None,
        description="https (http only on the loopback): the decision is POSTed there, "
        "signed (Sceau-Signature); the client needs a webhook secret",
    )

    @model_validator(mode="after")
    def _eid_for_eid_only(self) -> ProofFields:
        if self.method is ProofMethod.EID and self.eid is None:
            raise PydanticCustomError("eid", "method 'eid' needs eid: {scheme, level}")
        if self.method is not ProofMethod.EID and self.eid is not None:
            raise PydanticCustomError("eid", "eid is only for method 'eid'")
        return self


class NaturalPersonProof(ProofFields):
    """An identity proof of a natural person."""

    subject_kind: Literal["natural"]
    subject: NaturalSubject


class LegalPersonProof(ProofFields):
    """An identity proof of a legal person, with the natural person who represents it."""

    subject_kind: Literal["legal"]
    subject: LegalSubject
    representative: Representative | None = None


# What the engine (registration/proofs.py) takes: one of the two, told apart by subject_kind.
ProofRequest: TypeAlias = NaturalPersonProof | LegalPersonProof


class IdentityProofRequest(RootModel[Annotated[ProofRequest, Field(discriminator="subject_kind")]]):
    """An identity proof (POST /ra/api/v1/identity-proofs): subject_kind says of whom."""

    # A root model (a union has no fields of its own) takes no ``extra`` setting: both of
    # its members forbid unknown fields.
    model_config = ConfigDict(frozen=True)
