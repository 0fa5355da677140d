"""EN 319 412-5 V2.5.1 QCS-5-01 and EN 319 411-2 QCS-5.2-1/-2, for the qualified profiles that
pkilint 0.13.3 cannot type (it has no QCP-l / QCP-l-qscd certificate type, standards.md 8.2):
QcCompliance present; QcSSCD when the key is in a QSCD; exactly one QcType matching the
subject kind; exactly one EN 319 411-2 policy OID, the one matching QcSSCD and subject kind."""

from __future__ import annotations

from asn1crypto import x509

from pki.lints.finding import Finding
from pki.profiles import Profile, SubjectKind
from pki.qcstatements import (
    OID_QC_COMPLIANCE,
    OID_QC_SSCD,
    OID_QC_STATEMENTS,
    OID_QC_TYPE,
    QC_TYPE_OIDS,
    QCStatementList,
    QcTypeSequence,
)

QCP_ARC = "0.4.0.194112.1."
EXPECTED_POLICY = {
    (SubjectKind.NATURAL, False): "0.4.0.194112.1.0",
    (SubjectKind.LEGAL, False): "0.4.0.194112.1.1",
    (SubjectKind.NATURAL, True): "0.4.0.194112.1.2",
    (SubjectKind.LEGAL, True): "0.4.0.194112.1.3",
}


def lint(tbs: x509.TbsCertificate, profile: Profile) -> list[Finding]:
    if not profile.qc.compliance or profile.subject_kind is None:
        return []
    statements: dict[str, object] = {}
    policies: list[str] = []
    for ext in tbs["extensions"]:
        if ext["extn_id"].dotted == OID_QC_STATEMENTS:
            for st in QCStatementList.load(ext["extn_value"].contents):
                statements[st["statement_id"].dotted] = st["statement_info"]
        elif ext["extn_id"].native == "certificate_policies":
            policies = [p["policy_identifier"].dotted for p in ext["extn_value"].parsed]
    findings: list[Finding] = []
    if OID_QC_COMPLIANCE not in statements:
        findings.append(Finding("sceau.qc_compliance_missing", "QcCompliance is mandatory"))
    sscd = OID_QC_SSCD in statements
    if profile.qscd and not sscd:
        findings.append(Finding("sceau.qc_sscd_missing", "QcSSCD is mandatory for QSCD keys"))
    expected_type = QC_TYPE_OIDS[
        "esign" if profile.subject_kind is SubjectKind.NATURAL else "eseal"
    ]
    info = statements.get(OID_QC_TYPE)
    types = [t.dotted for t in QcTypeSequence.load(info.dump())] if info is not None else []  # type: ignore[attr-defined]
    if types != [expected_type]:
        findings.append(
            Finding("sceau.qc_type_mismatch", f"QcType must be exactly {expected_type}")
        )
    qcp = [p for p in policies if p.startswith(QCP_ARC)]
    expected_policy = EXPECTED_POLICY[(profile.subject_kind, sscd)]
    if qcp != [expected_policy]:
        findings.append(
            Finding(
                "sceau.qc_policy_mismatch", f"exactly one EN 319 411-2 policy: {expected_policy}"
            )
        )
    return findings
