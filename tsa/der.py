"""The few DER encodings the TSA writes for every token, by hand.

asn1crypto re-encodes every value built from Python data on each dump (standards.md
section 12): building a token its plain way costs 18-20 ms of Python. The parts of a
token that change per request (TSTInfo, messageDigest, the signature) are small
primitives, so they are encoded here directly (X.690 section 8, DER per section 10) and
spliced into templates that asn1crypto encoded once per signer. OpenSSL and pyHanko, not
this module, judge the result (tests/test_tsa_interop.py).
"""

from __future__ import annotations

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
GENERALIZED_TIME = 0x18
UTF8_STRING = 0x0C
BIT_STRING = 0x03


def length(n: int) -> bytes:
    """X.690 8.1.3: short form below 128, else the minimal long form."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def integer(n: int) -> bytes:
    """X.690 8.3: two's complement in the fewest octets (one more when the top bit would
    read as a sign)."""
    size = (n + (n < 0)).bit_length() // 8 + 1
    return tlv(INTEGER, n.to_bytes(size, "big", signed=True))


def oid(dotted: str) -> bytes:
    """X.690 8.19: the first two arcs in one subidentifier, each in base 128."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39) or min(arcs) < 0:
        raise ValueError(f"not an object identifier: {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def generalized_time(unix_micros: int) -> bytes:
    """RFC 3161 section 2.4.2 (genTime): UTC with "Z", a fraction only when it is not zero,
    and no trailing zero in it ("19990609001326.34352Z"), which is what DER asks too
    (X.690 11.7)."""
    seconds, micros = divmod(unix_micros, 1_000_000)
    days, rest = divmod(seconds, 86_400)
    year, month, day = _civil_from_days(days)
    hh, rest = divmod(rest, 3600)
    mm, ss = divmod(rest, 60)
    text = f"{year:04d}{month:02d}{day:02d}{hh:02d}{mm:02d}{ss:02d}"
    if micros:
        text += "." + f"{micros:06d}".rstrip("0")
    return tlv(GENERALIZED_TIME, (text + "Z").encode("ascii"))


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
    (H. Hinnant's algorithm): three integer divisions where datetime costs a microsecond."""
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def named_bits(*bits: int) -> bytes:
    """A named BIT STRING (PKIFailureInfo): X.690 11.2.2, trailing zero bits dropped, so
    the string ends at the highest bit set."""
    top = max(bits)
    body = bytearray(top // 8 + 1)
    for bit in bits:
        body[bit // 8] |= 0x80 >> (bit % 8)
    unused = 7 - top % 8
    return tlv(BIT_STRING, bytes((unused,)) + bytes(body))
