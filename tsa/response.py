"""TimeStampResp (RFC 3161 section 2.4.2): a granted token, or a rejection that says why.

The TSA's renderer of the shared error vocabulary (style.md section 6): a check raises a
:class:`TsaRejection` naming its PKIFailureInfo bit, or any ``SceauError``, which
:func:`failure_of` maps to a bit; every refusal becomes a ``rejection`` PKIStatusInfo and
never carries a token (RFC 3161: status other than 0 or 1 -> no timeStampToken).
"""

from __future__ import annotations

from enum import IntEnum

from core.errors import ErrorKind, SceauError
from tsa import der


class PKIStatus(IntEnum):
    GRANTED = 0
    REJECTION = 2


class PKIFailure(IntEnum):
    """PKIFailureInfo bits (RFC 3161 section 2.4.2) and what we use each for."""

    BAD_ALG = 0  # imprint hash not SHA-256/384/512 (EN 319 422 §5.1, TS 119 312)
    BAD_REQUEST = 2  # a request we do not support (TimeStampReq version other than v1)
    BAD_DATA_FORMAT = 5  # not a DER TimeStampReq, or an imprint of the wrong length
    TIME_NOT_AVAILABLE = 14  # clock not trusted (EN 319 421 TIS-7.7.1-07, TIS-7.7.2-06)
    UNACCEPTED_POLICY = 15  # reqPolicy other than ours (RFC 3161 §2.4.2)
    UNACCEPTED_EXTENSION = 16  # any request extension: we recognise none (RFC 3161 §2.4.1)
    SYSTEM_FAILURE = 25  # HSM, database, no valid TSU certificate

    @property
    def rfc_name(self) -> str:
        """The name RFC 3161 gives the bit (what OpenSSL prints)."""
        head, *rest = self.name.lower().split("_")
        return head + "".join(word.capitalize() for word in rest)


class TsaRejection(SceauError):  # noqa: N818 - a refusal, not an error: style.md section 4
    """A request refused with a specific PKIFailureInfo bit. ``detail`` goes to the
    client as the statusString: never a secret in it."""

    def __init__(self, failure: PKIFailure, detail: str) -> None:
        kind = ErrorKind.HSM if failure is PKIFailure.SYSTEM_FAILURE else ErrorKind.INVALID
        super().__init__(kind, detail)
        self.failure = failure


def failure_of(exc: SceauError) -> PKIFailure:
    """Checks of the request raise TsaRejection with their bit; any other error comes from
    our side of the exchange (HSM, database, configuration): systemFailure."""
    if isinstance(exc, TsaRejection):
        return exc.failure
    return PKIFailure.SYSTEM_FAILURE


_GRANTED_STATUS = der.tlv(der.SEQUENCE, der.integer(PKIStatus.GRANTED))


def granted(token: bytes) -> bytes:
    """status granted (0) and the token. Never grantedWithMods: we modify nothing."""
    return der.tlv(der.SEQUENCE, _GRANTED_STATUS + token)


def rejection(failure: PKIFailure, detail: str) -> bytes:
    """status rejection (2), the reason as a one-element PKIFreeText, and the failure bit."""
    status_string = der.tlv(der.SEQUENCE, der.tlv(der.UTF8_STRING, detail.encode()))
    status = der.tlv(
        der.SEQUENCE,
        der.integer(PKIStatus.REJECTION) + status_string + der.named_bits(failure),
    )
    return der.tlv(der.SEQUENCE, status)
