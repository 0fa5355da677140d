"""Build a TBSCertificate from a profile, a subject and a key; assemble the signed certificate.

Nothing here touches the HSM or the database: the pipeline lints exactly the bytes built
here, then signs them, then :func:`assemble` wraps them without re-encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import core, keys, x509

from core.hsm.algorithms import SignatureScheme, default_scheme
from pki.profiles import KeyUsageBit, Profile
from pki.qcstatements import OID_QC_STATEMENTS, encode_qc_statements

ANY_POLICY = "2.5.29.32.0"


@dataclass(frozen=True)
class Urls:
    """Where relying parties find what a certificate points at (design.md URL map)."""

    base: str  # AIA, CRLDP, OCSP: plain http by design
    documents: str  # CPS and PKI disclosure statements

    def ca_cert(self, issuer: str) -> str:
        return f"{self.base}/certs/{issuer}.crt"

    def crl(self, issuer: str, shard: int | None = None) -> str:
        """The full CRL, or one shard's partition (``persons-3.crl``) when CRLs are sharded."""
        name = issuer if shard is None else f"{issuer}-{shard}"
        return f"{self.base}/crl/{name}.crl"

    def ocsp(self) -> str:
        return f"{self.base}/ocsp"

    def cps(self, issuer: str) -> str:
        return f"{self.documents}/policies/cps-{issuer}"

    def pds(self) -> str:
        return self.documents + "/policies/pds-{lang}"


@dataclass(frozen=True)
class IssuerInfo:
    """What of the issuing CA goes into the certificates it signs."""

    id: str
    name: x509.Name
    key_id: bytes
    not_after: datetime
    scheme: SignatureScheme


@dataclass(frozen=True)
class TbsRequest:
    profile: Profile
    subject: x509.Name
    spki_der: bytes
    serial: int
    not_before: datetime
    policy_oids: list[str]
    issuer: IssuerInfo | None  # None: self-signed root
    subject_alt_emails: tuple[str, ...] = ()
    crl_shard: int | None = None  # fixed at issuance; None = the issuer's full CRL


def key_identifier(spki_der: bytes) -> bytes:
    """RFC 5280 section 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING."""
    spki = keys.PublicKeyInfo.load(spki_der)
    return hashlib.sha1(spki["public_key"].contents[1:], usedforsecurity=False).digest()


def _ext(extn_id: str, value: object, *, critical: bool = False) -> x509.Extension:
    return x509.Extension({"extn_id": extn_id, "critical": critical, "extn_value": value})


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)


def _time(moment: datetime) -> x509.Time:
    # RFC 5280 section 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    if moment.year < 2050:
        return x509.Time({"utc_time": moment})
    return x509.Time({"general_time": moment})


def _policies(req: TbsRequest, urls: Urls, issuer_id: str) -> list[dict[str, object]]:
    cps = {
        "policy_qualifier_id": "certification_practice_statement",
        "qualifier": core.IA5String(urls.cps(issuer_id)),
    }
    out: list[dict[str, object]] = []
    for index, oid in enumerate(req.policy_oids):
        info: dict[str, object] = {"policy_identifier": oid}
        # The CPS pointer rides on the last (our own) policy, once.
        if index == len(req.policy_oids) - 1:
            info["policy_qualifiers"] = [cps]
        out.append(info)
    return out


def build_tbs(req: TbsRequest, urls: Urls) -> x509.TbsCertificate:
    profile = req.profile
    spki = keys.PublicKeyInfo.load(req.spki_der)
    subject_key_id = key_identifier(req.spki_der)
    issuer = req.issuer
    issuer_name = issuer.name if issuer else req.subject
    not_after = req.not_before + timedelta(days=profile.validity_days)
    if issuer is not None:
        # A certificate never outlives its issuer's certificate.
        not_after = min(not_after, issuer.not_after)
    is_ca = profile.kind.is_ca

    extensions: list[x509.Extension] = []
    if is_ca:
        constraints: dict[str, object] = {"ca": True}
        if profile.path_length is not None:
            constraints["path_len_constraint"] = profile.path_length
        extensions.append(_ext("basic_constraints", constraints, critical=True))
    extensions.append(
        _ext(
            "key_usage",
            x509.KeyUsage(set(KeyUsageBit(b).value for b in profile.key_usage)),
            critical=True,  # RFC 5280 4.2.1.3: SHOULD be critical
        )
    )
    extensions.append(_ext("key_identifier", subject_key_id))
    # EN 319 412-2 GEN-4.3.1-1: AKI with the issuing key's identifier (a root names itself,
    # which RFC 5280 allows and path builders use when several roots share a name).
    authority_key_id = issuer.key_id if issuer else subject_key_id
    extensions.append(_ext("authority_key_identifier", {"key_identifier": authority_key_id}))
    if profile.extended_key_usage:
        extensions.append(
            _ext(
                "extended_key_usage",
                list(profile.extended_key_usage),
                critical=profile.eku_critical,
            )
        )
    if profile.ocsp_nocheck:
        extensions.append(_ext("ocsp_no_check", None))
    if issuer is not None and profile.status_pointers:
        extensions.append(
            _ext(
                "authority_information_access",
                [
                    {"access_method": "ocsp", "access_location": _uri(urls.ocsp())},
                    {
                        "access_method": "ca_issuers",
                        "access_location": _uri(urls.ca_cert(issuer.id)),
                    },
                ],
            )
        )
        extensions.append(
            _ext(
                "crl_distribution_points",
                [{"distribution_point": {"full_name": [_uri(urls.crl(issuer.id, req.crl_shard))]}}],
            )
        )
    if issuer is not None and req.policy_oids:
        extensions.append(_ext("certificate_policies", _policies(req, urls, issuer.id)))
    if req.subject_alt_emails:
        extensions.append(
            _ext(
                "subject_alt_name",
                [x509.GeneralName(name="rfc822_name", value=e) for e in req.subject_alt_emails],
            )
        )
    if profile.qc.present:
        qc_der = encode_qc_statements(profile.qc, urls.pds())
        extensions.append(
            _ext(
                # Pre-encoded and wrapped as is: asn1crypto may know the OID (pyHanko
                # registers one) and would otherwise try to re-parse our bytes as natives.
                OID_QC_STATEMENTS,
                core.ParsableOctetString(qc_der),
            )
        )

    signature = (issuer.scheme if issuer else _root_scheme(profile)).algorithm_identifier()
    return x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": req.serial,
            "signature": signature,
            "issuer": issuer_name,
            "validity": {"not_before": _time(req.not_before), "not_after": _time(not_after)},
            "subject": req.subject,
            "subject_public_key_info": spki,
            "extensions": extensions,
        }
    )


def _root_scheme(profile: Profile) -> SignatureScheme:
    (algorithm,) = profile.key_algorithms
    return default_scheme(algorithm)


def assemble(tbs_der: bytes, scheme: SignatureScheme, signature: bytes) -> bytes:
    """Certificate ::= SEQUENCE { tbs, signatureAlgorithm, signatureValue } around the
    exact TBS bytes that were linted and signed (no re-encoding)."""
    algorithm: bytes = scheme.algorithm_identifier().dump()
    body = tbs_der + algorithm + bytes(core.OctetBitString(signature).dump())
    return _der_header(len(body)) + body


def _der_header(length: int) -> bytes:
    if length < 0x80:
        return bytes([0x30, length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x30, 0x80 | len(size)]) + size
