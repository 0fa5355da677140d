"""ASN.1 of the qcStatements extension (RFC 3739 section 3.2.6, ETSI EN 319 412-5 Annex B).

asn1crypto knows neither the extension nor the ETSI statements, so they are declared here.
"""

from __future__ import annotations

from asn1crypto import core, x509

from pki.profiles import QcStatements

OID_QC_STATEMENTS = "1.3.6.1.5.5.7.1.3"
OID_QC_COMPLIANCE = "0.4.0.1862.1.1"
OID_QC_RETENTION_PERIOD = "0.4.0.1862.1.3"
OID_QC_SSCD = "0.4.0.1862.1.4"
OID_QC_PDS = "0.4.0.1862.1.5"
OID_QC_TYPE = "0.4.0.1862.1.6"
OID_PKIX_QC_SYNTAX_V2 = "1.3.6.1.5.5.7.11.2"
QC_TYPE_OIDS = {"esign": "0.4.0.1862.1.6.1", "eseal": "0.4.0.1862.1.6.2"}
SEMANTICS_OIDS = {"natural": "0.4.0.194121.1.1", "legal": "0.4.0.194121.1.2"}


class SemanticsInformation(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("semantics_identifier", core.ObjectIdentifier, {"optional": True}),
        ("name_registration_authorities", x509.GeneralNames, {"optional": True}),
    ]


class PdsLocation(core.Sequence):
    _fields = [("url", core.IA5String), ("language", core.PrintableString)]  # noqa: RUF012


class PdsLocations(core.SequenceOf):
    _child_spec = PdsLocation


class QcTypeSequence(core.SequenceOf):
    _child_spec = core.ObjectIdentifier


class QCStatement(core.Sequence):
    _fields = [  # noqa: RUF012
        ("statement_id", core.ObjectIdentifier),
        ("statement_info", core.Any, {"optional": True}),
    ]


class QCStatementList(core.SequenceOf):
    _child_spec = QCStatement


def encode_qc_statements(qc: QcStatements, pds_url: str) -> bytes:
    """DER of the extension value. ``pds_url`` has a ``{lang}`` placeholder.

    The order follows EN 319 412-5 Annex B's numbering; relying parties do not depend on it.
    """
    statements: list[dict[str, object]] = []
    if qc.compliance:
        statements.append({"statement_id": OID_QC_COMPLIANCE})
    if qc.retention_years:
        statements.append(
            {
                "statement_id": OID_QC_RETENTION_PERIOD,
                "statement_info": core.Integer(qc.retention_years),
            }
        )
    if qc.sscd:
        statements.append({"statement_id": OID_QC_SSCD})
    if qc.pds_languages:
        locations = PdsLocations(
            [{"url": pds_url.format(lang=lang), "language": lang} for lang in qc.pds_languages]
        )
        statements.append({"statement_id": OID_QC_PDS, "statement_info": locations})
    if qc.type:
        statements.append(
            {"statement_id": OID_QC_TYPE, "statement_info": QcTypeSequence([QC_TYPE_OIDS[qc.type]])}
        )
    if qc.semantics:
        info = SemanticsInformation({"semantics_identifier": SEMANTICS_OIDS[qc.semantics]})
        statements.append({"statement_id": OID_PKIX_QC_SYNTAX_V2, "statement_info": info})
    return bytes(QCStatementList(statements).dump())
