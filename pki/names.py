"""Names of our own entities (CAs, TSU, OCSP responders): EN 319 412-2 GEN-4.2.3.1 wants
C, O, CN, and organizationIdentifier when a registration number exists."""

from __future__ import annotations

from asn1crypto import x509

from core.config import SceauConfig


def organisation_name(config: SceauConfig, common_name: str) -> x509.Name:
    attributes = {
        "country_name": config.ca.country,
        "organization_name": config.ca.organization,
        "common_name": f"{config.ca.organization} {common_name}",
    }
    if config.ca.organization_identifier:
        attributes["organization_identifier"] = config.ca.organization_identifier
    return x509.Name.build(attributes)
