"""TimeStampReq (RFC 3161 section 2.4.1): bytes in, a validated request out, or a
:class:`~tsa.response.TsaRejection` naming the PKIFailureInfo bit.

What is checked here is the request alone; whether its policy is ours is the engine's
question (it knows the policy). The request is parsed with asn1crypto, all the way (its
parsing is lazy: ``.native`` forces every field), and must be nothing but one
TimeStampReq (``strict``: no trailing bytes). BER forms that asn1crypto accepts
(indefinite or long-form lengths) are accepted too: we never sign or store the request's
bytes, and every part of it that reaches a token is re-encoded in DER.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import core, tsp

from tsa import der
from tsa.response import PKIFailure, TsaRejection

# A real TimeStampReq is under 200 bytes (SHA-512 imprint, policy, 160-bit nonce); the
# limit is checked before the body is read (tsa/views.py).
MAX_QUERY_BYTES = 8192


@dataclass(frozen=True)
class ImprintHash:
    name: str  # what the timestamps table records
    oid: str
    size: int  # octets of the hash value


# ETSI EN 319 422 §5.1 with TS 119 312 V2.1.1: SHA-256/384/512 are recommended; SHA-1 and
# SHA-224 (legacy until 2028) are refused. SHA-3 is recommended too, but OpenSSL's
# `ts -verify` and several relying parties do not know it in this role yet.
HASHES = {
    h.oid: h
    for h in (
        ImprintHash("sha256", "2.16.840.1.101.3.4.2.1", 32),
        ImprintHash("sha384", "2.16.840.1.101.3.4.2.2", 48),
        ImprintHash("sha512", "2.16.840.1.101.3.4.2.3", 64),
    )
}


@dataclass(frozen=True)
class TimestampRequest:
    hash: ImprintHash
    hashed_message: bytes
    # RFC 5754 §2: SHA-2 parameters are absent or NULL; the token echoes the request's
    # choice, so that its messageImprint equals the request's (RFC 3161 §2.4.2).
    null_parameters: bool
    req_policy: str | None
    nonce: int | None
    cert_req: bool

    def message_imprint_der(self) -> bytes:
        algorithm = der.oid(self.hash.oid) + (b"\x05\x00" if self.null_parameters else b"")
        return der.tlv(
            der.SEQUENCE,
            der.tlv(der.SEQUENCE, algorithm) + der.tlv(der.OCTET_STRING, self.hashed_message),
        )


def parse_request(body: bytes) -> TimestampRequest:
    try:
        req = tsp.TimeStampReq.load(body, strict=True)
        native = req.native  # asn1crypto parses lazily: force every field now
        algorithm = req["message_imprint"]["hash_algorithm"]
        # RFC 5754 §2: SHA-2 parameters are absent or NULL; asn1crypto's DigestAlgorithm
        # refuses anything else for these OIDs while parsing (a badDataFormat here).
        parameters = algorithm["parameters"]
    except Exception as exc:
        # asn1crypto signals bad DER with ValueError and TypeError mostly, but also
        # OverflowError, KeyError and others on some inputs (tests/test_tsa_fuzz.py):
        # whatever the decoder raised, these bytes are not a TimeStampReq.
        raise TsaRejection(PKIFailure.BAD_DATA_FORMAT, "not a DER TimeStampReq") from exc
    # OpenSSL's TSA answers the same bit for another version (ts_check_request).
    if native["version"] != "v1":
        raise TsaRejection(PKIFailure.BAD_REQUEST, "only TimeStampReq version 1 is supported")
    imprint = native["message_imprint"]
    found = HASHES.get(algorithm["algorithm"].dotted)
    if found is None:
        raise TsaRejection(
            PKIFailure.BAD_ALG,
            f"imprint hash {imprint['hash_algorithm']['algorithm']} not accepted;"
            " use SHA-256, SHA-384 or SHA-512",
        )
    hashed: bytes = imprint["hashed_message"]
    if len(hashed) != found.size:
        raise TsaRejection(
            PKIFailure.BAD_DATA_FORMAT,
            f"a {found.name} imprint has {found.size} octets, not {len(hashed)}",
        )
    if native["extensions"] is not None:
        # RFC 3161 §2.4.1: an extension the server does not recognise, critical or not,
        # gets unacceptedExtension; we recognise none.
        raise TsaRejection(PKIFailure.UNACCEPTED_EXTENSION, "no request extension is supported")
    policy = req["req_policy"]
    return TimestampRequest(
        hash=found,
        hashed_message=hashed,
        null_parameters=isinstance(parameters, core.Null),
        req_policy=policy.dotted if isinstance(policy, core.ObjectIdentifier) else None,
        nonce=native["nonce"],
        cert_req=bool(native["cert_req"]),
    )
