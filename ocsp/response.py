"""OCSPResponse and BasicOCSPResponse (RFC 6960 section 4.2), assembled from DER parts.

:func:`response_data` builds the ResponseData to be signed; :func:`signed_response` wraps
it with the signature into the OCSPResponse. The signature itself is the caller's (the
responder key lives in the token).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import ocsp, x509

from core.hsm.algorithms import SignatureScheme
from ocsp import der
from ocsp.request import ResponseStatus
from pki.signers import ActiveSigner
from pki.status import CertState, CertStatus

ID_PKIX_OCSP_BASIC = der.oid("1.3.6.1.5.5.7.48.1.1")
ID_PKIX_OCSP_NONCE = der.oid("1.3.6.1.5.5.7.48.1.2")
ID_PKIX_OCSP_ARCHIVE_CUTOFF = der.oid("1.3.6.1.5.5.7.48.1.6")
ID_PKIX_OCSP_EXTENDED_REVOKE = der.oid("1.3.6.1.5.5.7.48.1.9")
ID_CE_INVALIDITY_DATE = der.oid("2.5.29.24")

CERTIFICATE_HOLD = 6  # RFC 5280 section 5.3.1 CRLReason
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# RFC 6960 section 4.2.1, CertStatus: good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo.
_GOOD = b"\x80\x00"
_REVOKED = 0xA1
# RFC 6960 section 2.2 (extended revoked definition): a serial this CA never issued is
# answered "revoked", reason certificateHold, at 1970-01-01T00:00:00Z, with no CRL
# reference nor CRL entry extension, and the extended-revoke response extension (NULL).
_NOT_ISSUED = der.tlv(
    _REVOKED,
    der.generalized_time(_EPOCH) + der.explicit(0, der.enumerated(CERTIFICATE_HOLD)),
)
_EXTENDED_REVOKE = der.extension(ID_PKIX_OCSP_EXTENDED_REVOKE, der.NULL)


def unsigned(status: ResponseStatus) -> bytes:
    """An error answer: responseStatus alone, responseBytes absent (RFC 6960 4.2.1)."""
    return der.sequence(der.enumerated(status))


@dataclass(frozen=True)
class SigningResponder:
    """A CA's delegated responder (RFC 6960 section 4.2.2.2) and the DER parts of every
    response it signs, encoded once."""

    key_label: str
    scheme: SignatureScheme
    not_before: datetime
    not_after: datetime
    # ResponderID byKey [2] KeyHash: SHA-1 of the responder's subjectPublicKey BIT STRING
    # value (RFC 6960 4.2.1; RFC 9919 2.2.2 asks for byKey; pkilint checks SHA-1 length).
    responder_id: bytes
    signature_algorithm: bytes
    # certs [0] EXPLICIT SEQUENCE OF Certificate: the responder certificate, so that a
    # client can verify a delegated response (RFC 9919 section 2.2.2).
    certs: bytes

    @classmethod
    def of(cls, signer: ActiveSigner) -> SigningResponder:
        cert = x509.Certificate.load(signer.certificate)
        key_bits = bytes(cert["tbs_certificate"]["subject_public_key_info"]["public_key"])
        return cls(
            key_label=signer.key_label,
            scheme=signer.scheme,
            not_before=cert.not_valid_before,
            not_after=signer.not_after,
            responder_id=der.explicit(
                2, der.octet_string(hashlib.sha1(key_bits, usedforsecurity=False).digest())
            ),
            signature_algorithm=bytes(signer.scheme.algorithm_identifier().dump()),
            certs=der.explicit(0, der.sequence(signer.certificate)),
        )


def single_response(
    cert_id: bytes,
    status: CertStatus,
    *,
    this_update: datetime,
    next_update: datetime,
    archive_cutoff: bytes,
) -> bytes:
    """SingleResponse for one CertID (its DER as it will be echoed). ``archive_cutoff`` is
    the singleExtension saying how far back status is kept (empty: none)."""
    extensions = []
    if status.state is CertState.GOOD:
        cert_status = _GOOD
    elif status.state is CertState.REVOKED:
        assert status.revoked_at is not None
        info = der.generalized_time(status.revoked_at)
        # RFC 5280 section 5.3.1: reason unspecified is better left out than sent as 0;
        # CA/B practice and pkilint's BR profile refuse 0 outright.
        if status.reason_code:  # neither None nor unspecified (0)
            info += der.explicit(0, der.enumerated(status.reason_code))
        cert_status = der.tlv(_REVOKED, info)
        if status.invalidity_date is not None:
            # RFC 6960 section 4.4.5: CRL entry extensions may be singleExtensions.
            extensions.append(
                der.extension(ID_CE_INVALIDITY_DATE, der.generalized_time(status.invalidity_date))
            )
    else:
        cert_status = _NOT_ISSUED
        archive_cutoff = b""  # RFC 6960 section 2.2: the answer carries nothing else
    if archive_cutoff:
        extensions.insert(0, archive_cutoff)
    return der.sequence(
        cert_id,
        cert_status,
        der.generalized_time(this_update),
        der.explicit(0, der.generalized_time(next_update)),
        der.explicit(1, der.sequence(*extensions)) if extensions else b"",
    )


def archive_cutoff_extension(cutoff: datetime) -> bytes:
    """RFC 6960 section 4.4.4 ArchiveCutoff. EN 319 411-2 CSS-6.3.10-10: set to the issuing
    CA certificate's notBefore, since status is kept for every certificate it issued."""
    return der.extension(ID_PKIX_OCSP_ARCHIVE_CUTOFF, der.generalized_time(cutoff))


def response_data(
    responder: SigningResponder,
    singles: list[bytes],
    *,
    produced_at: datetime,
    nonce: bytes | None,
    extended_revoke: bool,
) -> bytes:
    """ResponseData (version v1, the DEFAULT, left out). ``nonce`` is the request's
    extnValue, echoed (RFC 9654 section 2.1); ``extended_revoke`` when a SingleResponse
    uses the extended revoked definition (RFC 6960 section 2.2)."""
    extensions = []
    if nonce is not None:
        extensions.append(der.extension(ID_PKIX_OCSP_NONCE, nonce))
    if extended_revoke:
        extensions.append(_EXTENDED_REVOKE)
    return der.sequence(
        responder.responder_id,
        der.generalized_time(produced_at),
        der.sequence(*singles),
        der.explicit(1, der.sequence(*extensions)) if extensions else b"",
    )


def signed_response(responder: SigningResponder, tbs: bytes, signature: bytes) -> bytes:
    """OCSPResponse { successful, ResponseBytes { id-pkix-ocsp-basic, BasicOCSPResponse } }."""
    basic = der.sequence(
        tbs, responder.signature_algorithm, der.bit_string(signature), responder.certs
    )
    return der.sequence(
        der.enumerated(ResponseStatus.SUCCESSFUL),
        der.explicit(0, der.sequence(ID_PKIX_OCSP_BASIC, der.octet_string(basic))),
    )


def first_status(response: bytes) -> str | None:
    """The certStatus ("good", "revoked", "unknown") of the first SingleResponse of one of
    our own signed responses; None if it is not one."""
    try:
        basic = ocsp.OCSPResponse.load(response)["response_bytes"]["response"].parsed
        name: str = basic["tbs_response_data"]["responses"][0]["cert_status"].name
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return name
