"""One error vocabulary for every service.

Checks raise a ``SceauError``; each service renders it once, in its protocol's terms
(problem+json for the JSON APIs, a PKIFailureInfo bit for the TSA, an OCSP status).
The ``detail`` is shown to the caller, so it never holds a secret.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    MALFORMED = "malformed"  # the request cannot be parsed (JSON, PEM, DER)
    INVALID = "invalid"  # parsed, but a field is missing or has a wrong value
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"
    TOO_LARGE = "too-large"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    CONFLICT = "conflict"  # the state forbids it (already revoked, proof not verified...)
    BAD_CSR = "bad-csr"
    BAD_KEY = "bad-key"  # key algorithm or size not allowed by the profile
    UNKNOWN_PROFILE = "unknown-profile"
    PROOF_NOT_USABLE = "proof-not-usable"
    NOT_IMPLEMENTED = "not-implemented"
    LINT_FAILED = "lint-failed"
    HSM = "hsm"
    CONFIG = "config"
    UNAVAILABLE = "unavailable"  # a dependency (the database) does not answer: retry later
    THROTTLED = "too-many-requests"  # too many failed attempts from one address


# Seconds a caller is told to wait (Retry-After) when a dependency does not answer.
RETRY_AFTER_SECONDS = 5


class SceauError(Exception):
    """A failure whose cause is known and can be told to the caller."""

    def __init__(self, kind: ErrorKind, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after  # seconds, for Retry-After (429, 503)


class ConfigError(SceauError):
    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.CONFIG, detail)


class UnavailableError(SceauError):
    """The database did not answer, or aborted the transaction: nothing was written."""

    def __init__(self, detail: str, *, retryable: bool = False) -> None:
        super().__init__(ErrorKind.UNAVAILABLE, detail, retry_after=RETRY_AFTER_SECONDS)
        self.retryable = retryable  # a deadlock or serialization failure: run it again


class HsmError(SceauError):
    """A PKCS#11 failure. The message names no module path, token or key label and never a
    PIN (the key store logs those specifics for the operator)."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.HSM, detail, retry_after=RETRY_AFTER_SECONDS)
