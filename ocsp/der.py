"""Just enough DER (X.690) to assemble OCSP messages from pre-encoded parts.

asn1crypto re-encodes every value built from Python data on each dump (standards.md
section 12), which would cost more than the signature itself. Responses are therefore
concatenated from parts, each encoded once: the responder's identifiers per signer, a
CertID per request, the rest per response. Parsing (requests) stays with asn1crypto;
tests parse every response we build with asn1crypto, cryptography, OpenSSL and pkilint.
"""

from __future__ import annotations

from datetime import datetime

from asn1crypto import core

# Universal tags used here.
BOOLEAN_TRUE = b"\x01\x01\xff"
NULL = b"\x05\x00"
_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_ENUMERATED = 0x0A
_GENERALIZED_TIME = 0x18
_SEQUENCE = 0x30


def tlv(tag: int, value: bytes) -> bytes:
    """One element: tag, definite length in the fewest octets (X.690 10.1), value."""
    length = len(value)
    if length < 0x80:
        return bytes((tag, length)) + value
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + value


def sequence(*parts: bytes) -> bytes:
    return tlv(_SEQUENCE, b"".join(parts))


def explicit(number: int, value: bytes) -> bytes:
    """[number] EXPLICIT: a constructed context-specific tag around the whole element."""
    return tlv(0xA0 | number, value)


def octet_string(value: bytes) -> bytes:
    return tlv(_OCTET_STRING, value)


def bit_string(value: bytes) -> bytes:
    """A BIT STRING of whole octets (signatures): no unused bits."""
    return tlv(_BIT_STRING, b"\x00" + value)


def integer(value: int) -> bytes:
    """Two's complement in the fewest octets (X.690 8.3.2)."""
    magnitude = value if value >= 0 else ~value  # -128 fits one octet, 128 needs two
    size = magnitude.bit_length() // 8 + 1  # room for the sign bit
    return tlv(_INTEGER, value.to_bytes(size, "big", signed=True))


def enumerated(value: int) -> bytes:
    return tlv(_ENUMERATED, value.to_bytes(1, "big"))


def oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def generalized_time(moment: datetime) -> bytes:
    """RFC 5280 section 4.1.2.5.2 and RFC 9919 section 2.2.4: UTC, seconds, no fraction."""
    return tlv(_GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def elements(sequence_der: bytes) -> list[bytes]:
    """The elements of a DER SEQUENCE that we encoded ourselves, each with its header."""
    body, _ = _element(sequence_der, 0)
    out = []
    offset = 0
    while offset < len(body):
        start = offset
        _, offset = _element(body, offset)
        out.append(body[start:offset])
    return out


def _element(data: bytes, offset: int) -> tuple[bytes, int]:
    """(value, offset after it) of the element at ``offset``: definite lengths only."""
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[start : start + size], "big")
        start += size
    if start + length > len(data):
        raise ValueError("truncated DER element")
    return data[start : start + length], start + length


def extension(extn_id: bytes, value: bytes, *, critical: bool = False) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }; DER
    leaves a FALSE default out (X.690 11.5)."""
    return sequence(extn_id, BOOLEAN_TRUE if critical else b"", octet_string(value))
