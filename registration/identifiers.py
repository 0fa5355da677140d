"""Organisation identifiers: EN 319 412-1 clause 5.1.4 syntax and the check digits of the
registers behind them, so that a typo is refused at registration, not found in a seal.

The checks raise ValueError: the request model (registration/requests.py) reports it as
the field's error.
"""

from __future__ import annotations

import re

# LEG-5.1.4-02: 3-letter type, 2-letter country, "-", identifier. Types pkilint 0.13.3 knows.
# No named groups: the OpenAPI document publishes this pattern, and JSON Schema patterns
# are ECMA-262 regular expressions.
ORG_ID = re.compile(r"^(VAT|NTR|PSD|LEI)([A-Z]{2})-([A-Za-z0-9.\-]{1,64})$")


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def french_vat_key(siren: str) -> str:
    return f"{(12 + 3 * (int(siren) % 97)) % 97:02d}"


def lei_ok(lei: str) -> bool:
    """ISO 17442: 20 characters, ISO 7064 MOD 97-10 over letters mapped to 10..35."""
    if not re.fullmatch(r"[A-Z0-9]{18}[0-9]{2}", lei):
        return False
    return int("".join(str(int(c, 36)) for c in lei)) % 97 == 1


def check_organization_identifier(value: str, country: str) -> str:
    """``value`` if it is a well-formed identifier of a legal person registered in
    ``country``, with the right check digits; else ValueError saying what is wrong."""
    match = ORG_ID.fullmatch(value)
    if match is None:
        raise ValueError(
            "must read TTTCC-identifier (EN 319 412-1 5.1.4), "
            "e.g. NTRFR-<SIREN> or VATFR-<key><SIREN>"
        )
    kind, id_country, ident = match.groups()
    if kind == "LEI":
        if id_country != "XG" or not lei_ok(ident):
            raise ValueError("LEI identifiers read LEIXG-<valid 20-char LEI>")
        return value
    if id_country != country:
        raise ValueError(f"the identifier's country {id_country} differs from {country}")
    # SIREN (9 digits) names the legal entity; SIRET (14) an establishment. Both Luhn.
    if (kind, id_country) == ("NTR", "FR") and not (
        re.fullmatch(r"\d{9}|\d{14}", ident) and luhn_ok(ident)
    ):
        raise ValueError("NTRFR- needs a valid SIREN (9 digits) or SIRET (14)")
    if (kind, id_country) == ("VAT", "FR") and not (
        re.fullmatch(r"\d{11}", ident)
        and luhn_ok(ident[2:])
        and ident[:2] == french_vat_key(ident[2:])
    ):
        raise ValueError("VATFR- needs the 2-digit key and a valid SIREN")
    return value
