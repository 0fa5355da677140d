"""TimeStampToken: TSTInfo (RFC 3161 section 2.4.2) in a CMS SignedData (RFC 5652
section 5) signed by the TSU key in the token.

A :class:`TokenTemplate` is made once per TSU certificate. Everything that does not vary
between tokens (algorithm identifiers, the signer identifier, the certificate, the
ESSCertIDv2 attribute, the policy, the accuracy, the TSA name) is DER-encoded then, with
asn1crypto; a token is those bytes spliced around the few that vary (TSTInfo, the
messageDigest attribute, the signature), encoded by tsa/der.py. Standards.md section 12
measured why: asn1crypto re-encodes values built from Python data on every dump.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import cms, tsp, x509

from core.hsm.algorithms import SignatureScheme
from tsa import der
from tsa.request import HASHES, TimestampRequest

ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_CT_TST_INFO = "1.2.840.113549.1.9.16.1.4"
ID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
ID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
# EN 319 421 §5.2 (OVR-5.2-01): the ETSI best-practices time-stamp policy, which a TSA that
# follows EN 319 421 may claim; a TSA with its own policy OID states that one instead.
BTSP_POLICY = "0.4.0.2023.1.1"
HASH_OIDS = {h.name: h.oid for h in HASHES.values()}

# Signs the DER of the signed attributes (RFC 5652 §5.4: with the SET OF tag) with the
# TSU key; returns the signature value as SignerInfo.signature carries it.
Sign = Callable[[bytes], bytes]


@dataclass(frozen=True)
class TokenFields:
    """What varies from one token to the next, apart from the request."""

    serial: int  # RFC 3161: unique per TSA, at most 160 bits (tsa/authority.py)
    unix_micros: int  # genTime


class TokenTemplate:
    """The pre-encoded parts of every token one TSU certificate signs."""

    def __init__(
        self,
        certificate: bytes,
        scheme: SignatureScheme,
        *,
        policy: str,
        accuracy_micros: int,
    ) -> None:
        cert = x509.Certificate.load(certificate)
        tbs = cert["tbs_certificate"]
        self.scheme = scheme
        self._hash_name = scheme.hash.value
        self._version = der.integer(1)
        self._policy = der.oid(policy)
        self._accuracy = _accuracy(accuracy_micros)
        # RFC 3161 §2.4.2: tsa, when present, is one of the TSU certificate's subject
        # names; it lets a relying party see which unit answered (EN 319 422 §5.2.2
        # leaves it optional). [0] EXPLICIT, as a tagged CHOICE always is.
        self._tsa = der.tlv(
            0xA0, x509.GeneralName(name="directory_name", value=tbs["subject"]).dump()
        )
        # RFC 5754 §2: SHA-2 AlgorithmIdentifiers SHOULD omit the parameters.
        digest_algorithm = der.tlv(der.SEQUENCE, der.oid(HASH_OIDS[self._hash_name]))
        issuer_and_serial = cms.IssuerAndSerialNumber(
            {"issuer": tbs["issuer"], "serial_number": tbs["serial_number"].native}
        ).dump()
        # RFC 5816 §2.2.1 / EN 319 422 §5.2.2: the signingCertificateV2 attribute binds the
        # TSU certificate to the signature; ESSCertIDv2 omits hashAlgorithm when it is
        # SHA-256 (the DEFAULT, which DER leaves out) and carries issuerSerial.
        cert_hash = hashlib.new(self._hash_name, certificate).digest()
        ess_cert_id: dict[str, object] = {
            "cert_hash": cert_hash,
            "issuer_serial": {
                "issuer": [x509.GeneralName(name="directory_name", value=tbs["issuer"])],
                "serial_number": tbs["serial_number"].native,
            },
        }
        if self._hash_name != "sha256":
            ess_cert_id["hash_algorithm"] = {"algorithm": self._hash_name}
        signing_certificate = cms.CMSAttribute(
            {
                "type": "signing_certificate_v2",
                "values": [tsp.SigningCertificateV2({"certs": [ess_cert_id]})],
            }
        ).dump()
        content_type = cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}).dump()
        self._static_attributes = (content_type, signing_certificate)
        self._md_attribute_head = der.oid(ID_MESSAGE_DIGEST)
        self._signed_data_head = der.integer(3) + der.tlv(der.SET, digest_algorithm)
        # RFC 5652 §5.1: version 3 because eContentType is not id-data.
        self._signer_info_head = der.integer(1) + issuer_and_serial + digest_algorithm
        self._signature_algorithm = scheme.algorithm_identifier().dump()
        # RFC 3161 §2.4.1: certReq TRUE -> the TSU certificate in `certificates`
        # ([0] IMPLICIT CertificateSet); FALSE -> the field is absent.
        self._certificates = der.tlv(0xA0, certificate)
        self._content_info_head = der.oid(ID_SIGNED_DATA)
        self._econtent_type = der.oid(ID_CT_TST_INFO)

    def tst_info(self, request: TimestampRequest, fields: TokenFields) -> bytes:
        """TSTInfo DER. ordering is left out (DEFAULT FALSE; EN 319 422 §5.2.2: absent or
        false); no extension is added."""
        body = (
            self._version
            + self._policy
            + request.message_imprint_der()
            + der.integer(fields.serial)
            + der.generalized_time(fields.unix_micros)
            + self._accuracy
        )
        if request.nonce is not None:
            # RFC 3161 §2.4.2: MUST equal the request's nonce.
            body += der.integer(request.nonce)
        return der.tlv(der.SEQUENCE, body + self._tsa)

    def signed_attributes(self, tst_info: bytes) -> bytes:
        """The SignerInfo's signed attributes as signed: a DER SET OF, so sorted by their
        encodings (X.690 11.6) - RFC 5652 §5.4 signs this form, tag 0x31."""
        digest = hashlib.new(self._hash_name, tst_info).digest()
        message_digest = der.tlv(
            der.SEQUENCE,
            self._md_attribute_head + der.tlv(der.SET, der.tlv(der.OCTET_STRING, digest)),
        )
        return der.tlv(der.SET, b"".join(sorted((*self._static_attributes, message_digest))))

    def token(self, tst_info: bytes, *, cert_req: bool, sign: Sign) -> bytes:
        """The ContentInfo holding the SignedData around ``tst_info``."""
        signed_attributes = self.signed_attributes(tst_info)
        signature = sign(signed_attributes)
        signer_info = der.tlv(
            der.SEQUENCE,
            self._signer_info_head
            # RFC 5652 §5.3: signedAttrs [0] IMPLICIT: the SET tag becomes 0xA0.
            + b"\xa0"
            + signed_attributes[1:]
            + self._signature_algorithm
            + der.tlv(der.OCTET_STRING, signature),
        )
        encap = der.tlv(
            der.SEQUENCE,
            self._econtent_type + der.tlv(0xA0, der.tlv(der.OCTET_STRING, tst_info)),
        )
        signed_data = der.tlv(
            der.SEQUENCE,
            self._signed_data_head
            + encap
            + (self._certificates if cert_req else b"")
            + der.tlv(der.SET, signer_info),
        )
        return der.tlv(der.SEQUENCE, self._content_info_head + der.tlv(0xA0, signed_data))


def _accuracy(micros: int) -> bytes:
    """Accuracy (RFC 3161 §2.4.2): seconds, then millis [0] and micros [1] IMPLICIT, each
    1..999 and left out when zero."""
    seconds, rest = divmod(micros, 1_000_000)
    millis, micro = divmod(rest, 1000)
    body = der.integer(seconds) if seconds else b""
    if millis:
        body += b"\x80" + der.integer(millis)[1:]
    if micro:
        body += b"\x81" + der.integer(micro)[1:]
    return der.tlv(der.SEQUENCE, body)
