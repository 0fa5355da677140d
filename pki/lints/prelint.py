"""Lint a to-be-signed certificate before the HSM signs it (standards.md 8.4).

pkilint judges a Certificate, so the TBS is wrapped with its own AlgorithmIdentifier and a
placeholder signature that is never published. Validators are built once per certificate
type and reused: building them costs far more than running them.
"""

from __future__ import annotations

import threading
from functools import cache

from asn1crypto import x509
from pkilint import etsi, finding_filter, loader
from pkilint.etsi.etsi_constants import CertificateType
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity

from pki.lints.etsi_319_412_5 import qualified_statements
from pki.lints.finding import Finding, Lint
from pki.lints.rfc5280 import serial_number
from pki.profiles import Profile

OWN_LINTS: tuple[Lint, ...] = (serial_number.lint, qualified_statements.lint)

# pkilint's validators keep per-run state; one lock keeps threads from sharing a run.
_lock = threading.Lock()


@cache
def _validator(etsi_type: str) -> tuple[object, list[object]]:
    if etsi_type:
        cert_type = CertificateType[etsi_type.replace("-", "_")]
        container = certificate.create_pkix_certificate_validator_container(
            etsi.create_decoding_validators(cert_type), etsi.create_validators(cert_type)
        )
        return container, list(etsi.create_etsi_finding_filters(cert_type))
    container = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    return container, []


def wrap_tbs(tbs_der: bytes) -> bytes:
    tbs = x509.TbsCertificate.load(tbs_der)
    placeholder = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": tbs["signature"],
            "signature_value": b"\x00" * 8,
        }
    )
    return bytes(placeholder.dump())


def pkilint_findings(cert_der: bytes, etsi_type: str) -> list[Finding]:
    """pkilint findings at WARNING or worse for a whole certificate (or a wrapped TBS)."""
    validator, filters = _validator(etsi_type)
    document = loader.load_der_certificate(cert_der, "candidate")
    with _lock:
        results = validator.validate(document.root)  # type: ignore[attr-defined]
    if filters:
        results, _ = finding_filter.filter_results(filters, results)
    return [
        Finding(fd.finding.code, fd.message or fd.finding.code, r.node.path)
        for r in results
        for fd in r.finding_descriptions
        if fd.finding.severity <= ValidationFindingSeverity.WARNING
    ]


def lint_tbs(tbs_der: bytes, profile: Profile, accept: frozenset[str]) -> list[Finding]:
    """Every blocking finding for these TBS bytes; empty means they may be signed."""
    findings = pkilint_findings(wrap_tbs(tbs_der), profile.etsi_type)
    tbs = x509.TbsCertificate.load(tbs_der)
    for rule in OWN_LINTS:
        findings.extend(rule(tbs, profile))
    return [f for f in findings if f.code not in accept]
