"""RFC 5280 section 4.1.2.2: positive, at most 20 octets; CA/B BR 7.1 (adopted in our CP):
at least 64 bits of CSPRNG output, so below 2^159 and not suspiciously small."""

from __future__ import annotations

from asn1crypto import x509

from pki.lints.finding import Finding
from pki.profiles import Profile


def lint(tbs: x509.TbsCertificate, profile: Profile) -> list[Finding]:
    serial = int(tbs["serial_number"].native)
    if serial <= 0 or serial >= 2**159:
        return [Finding("sceau.serial_out_of_range", "serial must be in [1, 2^159)")]
    if serial.bit_length() < 64:
        return [Finding("sceau.serial_too_short", "serial carries fewer than 64 bits")]
    return []
