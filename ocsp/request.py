"""OCSPRequest (RFC 6960 section 4.1): bytes in, a validated :class:`OcspRequest` out, or an
:class:`OcspRejection` that names the OCSP status to answer. Nothing here knows HTTP.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import unquote

from asn1crypto import ocsp

from ocsp import der


class ResponseStatus(IntEnum):
    """OCSPResponseStatus (RFC 6960 section 4.2.1); 4 is not used."""

    SUCCESSFUL = 0
    MALFORMED_REQUEST = 1
    INTERNAL_ERROR = 2
    TRY_LATER = 3
    SIG_REQUIRED = 5
    UNAUTHORIZED = 6


class OcspRejection(Exception):  # noqa: N818 - an answer in OCSP terms (style.md section 4)
    """The request gets an unsigned OCSPResponse with this status, and no responseBytes."""

    def __init__(self, status: ResponseStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# CertID hash algorithms we match issuers with: SHA-1 (RFC 5019 clients, OpenSSL's
# default) and SHA-256 (RFC 9919 clients), plus the longer SHA-2 for completeness.
# Name -> (AlgorithmIdentifier OID, hashlib name).
HASHES: dict[str, tuple[bytes, str]] = {
    "sha1": (der.oid("1.3.14.3.2.26"), "sha1"),
    "sha256": (der.oid("2.16.840.1.101.3.4.2.1"), "sha256"),
    "sha384": (der.oid("2.16.840.1.101.3.4.2.2"), "sha384"),
    "sha512": (der.oid("2.16.840.1.101.3.4.2.3"), "sha512"),
}

# RFC 9654 section 2.1: Nonce ::= OCTET STRING (SIZE(1..128)).
MAX_NONCE_BYTES = 128

_NONCE = "nonce"
# Always satisfied: every client accepts id-pkix-ocsp-basic (RFC 6960 section 4.2.1),
# the only type we produce.
_ACCEPTABLE_RESPONSES = "acceptable_responses"
_UNDERSTOOD = {_NONCE, _ACCEPTABLE_RESPONSES}


@dataclass(frozen=True)
class CertId:
    """One CertID as the client sent it (RFC 6960 section 4.1.1)."""

    hash_algorithm: str  # a key of HASHES
    null_parameters: bool  # AlgorithmIdentifier parameters NULL (True) or absent
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int

    def dump(self) -> bytes:
        """The CertID in DER, parameters as the client chose: clients that compare the
        SingleResponse's CertID with theirs byte for byte find it."""
        algorithm_oid, _ = HASHES[self.hash_algorithm]
        parameters = der.NULL if self.null_parameters else b""
        return der.sequence(
            der.sequence(algorithm_oid, parameters),
            der.octet_string(self.issuer_name_hash),
            der.octet_string(self.issuer_key_hash),
            der.integer(self.serial),
        )


@dataclass(frozen=True)
class OcspRequest:
    cert_ids: tuple[CertId, ...]
    # The nonce extension's extnValue, echoed byte for byte (RFC 9654 section 2.1;
    # OpenSSL compares the whole value). None: no nonce, a pre-signed response will do.
    nonce: bytes | None


def decode_get(encoded: str, max_bytes: int) -> bytes:
    """The DER request of a GET URL's last part (RFC 6960 appendix A.1): base64, standard
    or URL-safe alphabet, padded or not, percent-encoded or not. The WSGI server already
    decoded the path once; what is left of ``%`` is a second encoding."""
    try:
        if "%" in encoded:
            encoded = unquote(encoded, errors="strict")
        text = encoded.translate(_URL_SAFE).rstrip("=")
        if len(text) > (max_bytes * 4 + 2) // 3:
            raise OcspRejection(ResponseStatus.MALFORMED_REQUEST, "request longer than allowed")
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise OcspRejection(ResponseStatus.MALFORMED_REQUEST, "not base64") from exc


_URL_SAFE = str.maketrans("-_", "+/")


def parse_request(body: bytes, *, max_cert_ids: int) -> OcspRequest:
    try:
        request = ocsp.OCSPRequest.load(body, strict=True)  # strict: no trailing bytes
        _ = request.native  # asn1crypto parses lazily: force every field now
    except Exception as exc:  # asn1crypto raises many exception types on hostile input
        raise OcspRejection(ResponseStatus.MALFORMED_REQUEST, "not a DER OCSPRequest") from exc
    tbs = request["tbs_request"]
    if tbs["version"].native != "v1":
        raise OcspRejection(ResponseStatus.MALFORMED_REQUEST, "OCSPRequest version is not v1")
    # requestorName and optionalSignature are ignored: RFC 9919 section 2.1.2 lets
    # responders ignore request signatures, and we answer anyone (EN 319 412-2
    # GEN-4.4.1-7 wants unsigned, unauthenticated requests accepted).
    requests = tbs["request_list"]
    if len(requests) == 0:
        raise OcspRejection(ResponseStatus.MALFORMED_REQUEST, "requestList is empty")
    if len(requests) > max_cert_ids:
        # A legal request that we decline to serve, so not malformedRequest.
        raise OcspRejection(
            ResponseStatus.UNAUTHORIZED, f"more than {max_cert_ids} certificates in one request"
        )
    cert_ids = []
    for single in requests:
        for ext in single["single_request_extensions"] or []:
            _refuse_critical(ext)
        cert_ids.append(_cert_id(single["req_cert"]))
    nonce = None
    seen: set[str] = set()
    for ext in tbs["request_extensions"] or []:
        name = ext["extn_id"].native
        if name in seen:
            # RFC 5280 section 4.2 semantics: an extension appears at most once.
            raise OcspRejection(ResponseStatus.MALFORMED_REQUEST, f"{name} extension repeated")
        seen.add(name)
        if name == _NONCE:
            nonce = _nonce(ext)
        elif name not in _UNDERSTOOD:
            _refuse_critical(ext)
    return OcspRequest(tuple(cert_ids), nonce)


def _refuse_critical(ext: ocsp.TBSRequestExtension | ocsp.RequestExtension) -> None:
    # RFC 6960 section 4.1.2: unrecognized extensions are ignored, unless critical.
    if ext["critical"].native:
        raise OcspRejection(
            ResponseStatus.MALFORMED_REQUEST,
            f"unsupported critical extension {ext['extn_id'].dotted}",
        )


def _nonce(ext: ocsp.TBSRequestExtension) -> bytes:
    value: bytes = ext["extn_value"].parsed.native  # an OCTET STRING inside extnValue
    if not 1 <= len(value) <= MAX_NONCE_BYTES:
        # RFC 9654 section 2.1: 1 to 128 octets; longer is refused with malformedRequest.
        raise OcspRejection(
            ResponseStatus.MALFORMED_REQUEST, f"nonce of {len(value)} octets (1 to 128 allowed)"
        )
    return bytes(ext["extn_value"].contents)


def _cert_id(cert_id: ocsp.CertId) -> CertId:
    algorithm = cert_id["hash_algorithm"]
    name = algorithm["algorithm"].native
    parameters = bytes(algorithm["parameters"].dump())
    if name not in HASHES or parameters not in {b"", der.NULL}:
        # Not malformed, but no issuer of ours can be matched with it (RFC 9919
        # section 2.2.3: "not capable of responding authoritatively").
        raise OcspRejection(
            ResponseStatus.UNAUTHORIZED, f"CertID hash algorithm {name} not supported"
        )
    return CertId(
        hash_algorithm=name,
        null_parameters=parameters == der.NULL,
        issuer_name_hash=bytes(cert_id["issuer_name_hash"].native),
        issuer_key_hash=bytes(cert_id["issuer_key_hash"].native),
        serial=int(cert_id["serial_number"].native),
    )
