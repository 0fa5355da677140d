"""Build and sign a CRL (RFC 5280 section 5) around a DER template of its entries.

A CRL of a million entries weighs tens of megabytes. Built as one asn1crypto object per
entry it would take minutes and several times its size in Python objects, so each entry is
encoded straight to DER by :meth:`RevokedEntries.add` (a few microseconds) and appended to
one ``bytearray``. The parts around the entries (issuer, times, extensions) are built with
asn1crypto once per CRL. The TBSCertList is hashed piece by piece, the digest signed in the
HSM, and the CertificateList joined once: the memory a CRL needs is about twice its size.

Nothing here touches the database or the HSM: :func:`sign_crl` takes the signing function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import core, crl, x509

from core.hsm.algorithms import SignatureScheme
from pki.revocation import REVOCATION_REASONS

# X.509 (10/2019) section 9.6.2.5 expiredCertsOnCRL, which asn1crypto does not know.
OID_EXPIRED_CERTS_ON_CRL = "2.5.29.60"
# The DER of the OIDs written by hand below.
_OID_REASON_CODE = core.ObjectIdentifier("2.5.29.21").dump()
_OID_INVALIDITY_DATE = core.ObjectIdentifier("2.5.29.24").dump()
_OID_EXPIRED_CERTS_ON_CRL = core.ObjectIdentifier(OID_EXPIRED_CERTS_ON_CRL).dump()
_CRL_EXTENSIONS = 0xA0  # [0], constructed
_SEQUENCE, _INTEGER, _OCTET_STRING, _ENUMERATED = 0x30, 0x02, 0x04, 0x0A
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_UTC_TIME_LAST_YEAR = 2049  # RFC 5280 section 5.1.2.4: UTCTime through 2049
_VERSION_2 = bytes.fromhex("020101")  # Version ::= INTEGER { v1(0), v2(1) }


def _header(tag: int, length: int) -> bytes:
    """DER identifier and length octets (X.690 section 8.1.3, definite form)."""
    if length < 0x80:
        return bytes((tag, length))
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big")


def _tlv(tag: int, content: bytes) -> bytes:
    return _header(tag, len(content)) + content


def _reason_extension(code: int) -> bytes:
    # Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE (omitted, RFC 5280 section
    # 5.3.1: non-critical), extnValue OCTET STRING { CRLReason ENUMERATED } }
    return _tlv(
        _SEQUENCE,
        _OID_REASON_CODE + _tlv(_OCTET_STRING, _tlv(_ENUMERATED, bytes((code,)))),
    )


# RFC 5280 section 5.3.1: "CRL issuers are strongly encouraged to ... omit reason code
# entry extensions rather than using the unspecified (0) reasonCode value"; pkilint's BR
# profile calls 0 an error (standards.md section 6.3). Unspecified maps to no extension.
_REASON_EXTENSIONS = {
    name: _reason_extension(code) for name, code in REVOCATION_REASONS.items() if code != 0
}
# invalidityDate (RFC 5280 section 5.3.2) is always GeneralizedTime of 15 characters
# (seconds, no fraction, "Z"): the prefix up to the time's characters is constant.
_GENERALIZED_TIME_CHARS = 15
_INVALIDITY_PREFIX = _header(
    _SEQUENCE, len(_OID_INVALIDITY_DATE) + 2 + 2 + _GENERALIZED_TIME_CHARS
) + (
    _OID_INVALIDITY_DATE
    + _header(_OCTET_STRING, 2 + _GENERALIZED_TIME_CHARS)
    + _header(_GENERALIZED_TIME, _GENERALIZED_TIME_CHARS)
)


def _time(moment: datetime) -> bytes:
    """RFC 5280 section 5.1.2.4/5.1.2.6: UTCTime through 2049, GeneralizedTime from 2050,
    always UTC to the second."""
    moment = moment.astimezone(UTC)
    if moment.year <= _UTC_TIME_LAST_YEAR:
        return _tlv(_UTC_TIME, moment.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(_GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode())


def _serial(serial_hex: str) -> bytes:
    """A certificate serial as a DER INTEGER: positive, so a leading zero octet when the
    high bit is set (X.690 section 8.3.2)."""
    raw = bytes.fromhex(serial_hex if len(serial_hex) % 2 == 0 else "0" + serial_hex)
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return _tlv(_INTEGER, raw)


class RevokedEntries:
    """The content of revokedCertificates, DER, one entry appended at a time."""

    def __init__(self) -> None:
        self.der = bytearray()
        self.count = 0
        self._taken = False

    def take(self) -> bytearray:
        """The buffer, for the CRL to be assembled in place; once only."""
        if self._taken:
            raise ValueError("these entries were already signed into a CRL")
        self._taken = True
        der, self.der = self.der, bytearray()
        return der

    def add(
        self,
        serial_hex: str,
        revoked_at: datetime,
        reason: str | None,
        invalidity_date: datetime | None,
    ) -> None:
        """Append SEQUENCE { userCertificate, revocationDate, crlEntryExtensions } (RFC 5280
        section 5.1.2.6). ``reason`` is a name of ca.issuance.REVOCATION_REASONS."""
        body = _serial(serial_hex) + _time(revoked_at)
        extensions = b""
        if reason is not None and reason != "unspecified":
            extensions = _REASON_EXTENSIONS[reason]
        if invalidity_date is not None:
            extensions += (
                _INVALIDITY_PREFIX
                + invalidity_date.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode()
            )
        if extensions:
            body += _tlv(_SEQUENCE, extensions)
        self.der += _header(_SEQUENCE, len(body))
        self.der += body
        self.count += 1


@dataclass(frozen=True)
class CrlFields:
    """Everything of a CRL but its entries."""

    issuer: x509.Name  # the CA certificate's subject as parsed from it: dumps byte for byte
    key_id: bytes  # the CA's subjectKeyIdentifier
    scheme: SignatureScheme
    number: int
    this_update: datetime
    next_update: datetime
    # The distribution point URL of a partitioned CRL; None for a complete CRL.
    scope_url: str | None
    # Revoked certificates stay listed after they expire; the CRL says since when.
    expired_certs_since: datetime


def _expired_certs_on_crl(since: datetime) -> bytes:
    """X.509 section 9.6.2.5 expiredCertsOnCRL, non-critical (standards.md section 6.2):
    EN 319 411-2 CSS-6.3.10-05/-06, present because revoked certificates are never taken
    off the CRL; the GeneralizedTime is when we started keeping expired ones. Written as
    DER by hand: asn1crypto knows no such extension (and the extension maps it would go
    through are global, which other libraries in the process may fill)."""
    value = _tlv(_GENERALIZED_TIME, since.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode())
    return _tlv(_SEQUENCE, _OID_EXPIRED_CERTS_ON_CRL + _tlv(_OCTET_STRING, value))


def _extensions(fields: CrlFields) -> list[crl.TBSCertListExtension]:
    extensions = [
        # RFC 5280 section 5.2.1: MUST, non-critical; the key identifier method, as in the
        # certificates this CA signs (EN 319 412-2 GEN-4.3.1-1).
        crl.TBSCertListExtension(
            {
                "extn_id": "authority_key_identifier",
                "critical": False,
                "extn_value": {"key_identifier": fields.key_id},
            }
        ),
        # RFC 5280 section 5.2.3: MUST, non-critical, monotonically increasing, <= 20 octets.
        crl.TBSCertListExtension(
            {"extn_id": "crl_number", "critical": False, "extn_value": fields.number}
        ),
    ]
    if fields.scope_url is not None:
        # RFC 5280 section 5.2.5: critical; the distributionPoint matches the CRL
        # distribution point of every certificate in this partition, so a relying party
        # never takes this CRL as complete for certificates outside it.
        extensions.append(
            crl.TBSCertListExtension(
                {
                    "extn_id": "issuing_distribution_point",
                    "critical": True,
                    "extn_value": {
                        "distribution_point": {
                            "full_name": [
                                x509.GeneralName(
                                    name="uniform_resource_identifier", value=fields.scope_url
                                )
                            ]
                        }
                    },
                }
            )
        )
    return extensions


def sign_crl(
    fields: CrlFields, entries: RevokedEntries, sign_digest: Callable[[bytes], bytes]
) -> bytearray:
    """The DER CertificateList (RFC 5280 section 5.1.1): the TBSCertList is hashed piece by
    piece, the digest signed by ``sign_digest``, and the CRL assembled around the entries in
    their own buffer, which it takes from ``entries``: a CRL of tens of megabytes is never
    copied."""
    before = b"".join(
        [
            _VERSION_2,  # RFC 5280 section 5.1.2.1: extensions are present
            # RFC 5280 section 5.1.2.2: the same AlgorithmIdentifier as signatureAlgorithm.
            fields.scheme.algorithm_identifier().dump(),
            # RFC 5280 section 5.1.2.3: the CA certificate's subject, byte for byte.
            fields.issuer.dump(),
            _time(fields.this_update),
            _time(fields.next_update),
        ]
    )
    body = entries.take()
    # RFC 5280 section 5.1.2.6: with no entry, revokedCertificates is absent (never empty).
    if entries.count:
        before += _header(_SEQUENCE, len(body))
    # crlExtensions [0] EXPLICIT Extensions (RFC 5280 section 5.1).
    extensions = b"".join(e.dump() for e in _extensions(fields))
    extensions += _expired_certs_on_crl(fields.expired_certs_since)
    after = _tlv(_CRL_EXTENSIONS, _tlv(_SEQUENCE, extensions))
    tbs_header = _header(_SEQUENCE, len(before) + len(body) + len(after))

    digest = hashlib.new(fields.scheme.hash.value)
    for part in (tbs_header, before, body, after):
        digest.update(part)
    signature = sign_digest(digest.digest())

    after += fields.scheme.algorithm_identifier().dump()
    after += core.OctetBitString(signature).dump()
    head = tbs_header + before
    body[0:0] = _header(_SEQUENCE, len(head) + len(body) + len(after)) + head
    body += after
    return body
