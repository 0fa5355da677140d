"""Certificate profiles: data under ``policies/profiles/``, checked once, then trusted.

The engine reads a profile's fields and never branches on its name. A profile that the
certificate policy forbids (a QSCD profile with a CSR key, a qualified seal without QcType
eseal...) is refused at load time, not at issuance time.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, NewType

from core.errors import ConfigError, ErrorKind, SceauError
from core.hsm.algorithms import KeyAlgorithm

# The data package policies/ holds the profiles; it has no code of its own to import.
POLICIES_DIR = Path(str(importlib.resources.files("policies")))
PROFILES_DIR = POLICIES_DIR / "profiles"

ProfileId = NewType("ProfileId", str)
IssuerId = NewType("IssuerId", str)


class ProfileKind(StrEnum):
    ROOT = "root"
    ISSUING_CA = "issuing-ca"
    SUBSCRIBER = "subscriber"
    # Delegated signers of ours, certified by a CA at the ceremony and on renewal:
    TSU = "tsu"  # a timestamping unit (RFC 3161)
    OCSP_RESPONDER = "ocsp-responder"  # one per CA (RFC 6960 delegated responder)

    @property
    def is_ca(self) -> bool:
        return self in {ProfileKind.ROOT, ProfileKind.ISSUING_CA}

    @property
    def is_signer(self) -> bool:
        return self in {ProfileKind.TSU, ProfileKind.OCSP_RESPONDER}


class SubjectKind(StrEnum):
    NATURAL = "natural"
    LEGAL = "legal"


class KeyOrigin(StrEnum):
    CSR = "csr"  # the subscriber holds the key and proves possession with a CSR
    HSM = "hsm"  # the key is generated in our token and used through remote signing


class ProofMethod(StrEnum):
    """How the identity was established (TS 119 461 use cases)."""

    DELEGATED = "delegated"  # the platform, as delegated RA, vouches for the identity
    FACE_TO_FACE = "face-to-face"  # 9.2.1 physical presence, checked by an officer
    REMOTE_VIDEO = "remote-video"  # 9.2.2 attended remote, checked by an officer
    EID = "eid"  # 9.2.4 notified eID means, checked by an officer
    REGISTRY = "registry"  # 9.3 legal person: authoritative register extract, officer-checked


# Identity documents an identity proof may rest on (REG-6.4.5-04 a/b: type, number, issuer).
DOCUMENT_TYPES = ("id-card", "passport", "residence-permit", "company-extract")


class KeyUsageBit(StrEnum):
    DIGITAL_SIGNATURE = "digital_signature"
    NON_REPUDIATION = "non_repudiation"
    KEY_ENCIPHERMENT = "key_encipherment"
    KEY_AGREEMENT = "key_agreement"
    KEY_CERT_SIGN = "key_cert_sign"
    CRL_SIGN = "crl_sign"


class QcType(StrEnum):
    ESIGN = "esign"
    ESEAL = "eseal"


class SemanticsId(StrEnum):
    NATURAL = "natural"  # 0.4.0.194121.1.1: serialNumber follows EN 319 412-1 5.1.3
    LEGAL = "legal"  # 0.4.0.194121.1.2: organizationIdentifier follows 5.1.4


@dataclass(frozen=True)
class QcStatements:
    compliance: bool = False
    sscd: bool = False
    type: str = ""
    retention_years: int = 0
    pds_languages: tuple[str, ...] = ()
    semantics: str = ""

    @property
    def present(self) -> bool:
        return self.compliance or self.sscd or bool(self.type or self.semantics)


@dataclass(frozen=True)
class Profile:
    id: ProfileId
    title: str
    kind: ProfileKind
    issuer: IssuerId  # the issuing CA's id ("persons"); a root names itself
    validity_days: int
    key_usage: frozenset[KeyUsageBit]
    key_algorithms: frozenset[KeyAlgorithm]
    subject_kind: SubjectKind | None = None
    etsi_type: str = ""  # pkilint CertificateType name; empty = lint with RFC 5280 rules only
    policy_oids: tuple[str, ...] = ()
    own_policy: str = ""  # appended to [ca] policy_arc
    key_origins: frozenset[KeyOrigin] = frozenset()
    hsm_key_algorithm: KeyAlgorithm | None = None
    identity_methods: frozenset[ProofMethod] = frozenset()
    approvals_required: int = 1
    qscd: bool = False
    path_length: int | None = None  # CA profiles only
    common_name: str = ""  # CA and signer profiles: the CN (after the organisation name)
    qc: QcStatements = QcStatements()
    # Extended key usage, as asn1crypto names or dotted OIDs; RFC 3161 2.3 wants the TSU's
    # id-kp-timeStamping alone and critical, EN 319 412-2 GEN-4.3.10-1 non-critical elsewhere.
    extended_key_usage: tuple[str, ...] = ()
    eku_critical: bool = False
    ocsp_nocheck: bool = False  # RFC 6960 4.2.2.2.1: a responder certificate is not checked
    # AIA and CRL distribution point; EN 319 412-2 GEN-4.3.11-1A and GEN-4.4.1-1 exempt
    # OCSP responder certificates from both.
    status_pointers: bool = True

    def policy_oid_list(self, policy_arc: str) -> list[str]:
        own = [f"{policy_arc}.{self.own_policy}"] if policy_arc and self.own_policy else []
        return [*self.policy_oids, *own]


_ENUM_SETS: dict[str, type[StrEnum]] = {
    "key_usage": KeyUsageBit,
    "key_algorithms": KeyAlgorithm,
    "key_origins": KeyOrigin,
    "identity_methods": ProofMethod,
}


def _convert(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(Profile)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"profile {name}: unknown key {key!r}")
        try:
            if key in _ENUM_SETS:
                out[key] = frozenset(_ENUM_SETS[key](v) for v in value)
            elif key == "kind":
                out[key] = ProfileKind(value)
            elif key == "subject_kind":
                out[key] = SubjectKind(value)
            elif key == "hsm_key_algorithm":
                out[key] = KeyAlgorithm(value)
            elif key in {"policy_oids", "extended_key_usage"}:
                out[key] = tuple(value)
            elif key == "qc":
                unknown = set(value) - {f.name for f in fields(QcStatements)}
                if unknown:
                    raise ConfigError(f"profile {name}: unknown key(s) in [qc]: {sorted(unknown)}")
                qc = dict(value)
                qc["pds_languages"] = tuple(qc.get("pds_languages", ()))
                out[key] = QcStatements(**qc)
            elif key in {"id", "issuer"}:
                out[key] = str(value)
            else:
                out[key] = value
        except ValueError as exc:
            raise ConfigError(f"profile {name}: {key}: {exc}") from exc
    return out


def _check(p: Profile) -> None:
    """Refuse what the certificate policy forbids. Each rule cites its source."""
    where = f"profile {p.id}"
    if p.kind is ProfileKind.SUBSCRIBER:
        if p.subject_kind is None or not p.key_origins or not p.identity_methods:
            raise ConfigError(f"{where}: subject_kind, key_origins, identity_methods required")
        if not p.policy_oids:
            raise ConfigError(f"{where}: EN 319 412-2 GEN-4.3.3-1 requires a policy OID")
        if KeyUsageBit.KEY_CERT_SIGN in p.key_usage or KeyUsageBit.CRL_SIGN in p.key_usage:
            raise ConfigError(f"{where}: an end-entity key may not sign certificates or CRLs")
        if p.qscd and p.key_origins != {KeyOrigin.HSM}:
            # design.md: QSCD profiles keep the subject key in our HSM.
            raise ConfigError(f"{where}: a QSCD profile must use key_origins = ['hsm']")
        if KeyOrigin.HSM in p.key_origins and p.hsm_key_algorithm not in p.key_algorithms:
            raise ConfigError(f"{where}: hsm_key_algorithm must be one of key_algorithms")
        if p.qc.compliance and p.qc.retention_years <= 0:
            raise ConfigError(f"{where}: EN 319 412-5: QcRetentionPeriod must be > 0")
        if p.qc.compliance and "en" not in p.qc.pds_languages:
            raise ConfigError(f"{where}: EN 319 412-5 QcPDS needs an English statement")
        if p.qscd and not p.qc.sscd:
            raise ConfigError(f"{where}: EN 319 412-5 QCS-5-01: QcSSCD is mandatory for QSCD keys")
        if p.subject_kind is SubjectKind.LEGAL and p.qc.compliance and p.qc.type != QcType.ESEAL:
            raise ConfigError(f"{where}: EN 319 412-5: a qualified seal needs QcType eseal")
        if p.qc.type and p.qc.type not in set(QcType):
            raise ConfigError(f"{where}: unknown QcType {p.qc.type!r}")
        if p.qc.semantics and p.qc.semantics not in set(SemanticsId):
            raise ConfigError(f"{where}: unknown semantics identifier {p.qc.semantics!r}")
    elif p.kind.is_ca:
        if KeyUsageBit.KEY_CERT_SIGN not in p.key_usage or not p.common_name:
            raise ConfigError(f"{where}: a CA profile needs key_cert_sign and common_name")
        if len(p.key_algorithms) != 1:
            raise ConfigError(f"{where}: a CA profile names exactly one key algorithm")
    else:
        if p.key_usage != {KeyUsageBit.DIGITAL_SIGNATURE} or not p.extended_key_usage:
            raise ConfigError(f"{where}: a signer certificate has digitalSignature and an EKU")
        if p.hsm_key_algorithm not in p.key_algorithms or not p.common_name:
            raise ConfigError(f"{where}: a signer profile needs hsm_key_algorithm, common_name")
    if not 0 < p.validity_days <= 36525:
        raise ConfigError(f"{where}: validity_days out of range")


def load_profile(path: Path) -> Profile:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: {exc}") from exc
    try:
        profile = Profile(**_convert(path.stem, raw))
    except TypeError as exc:
        raise ConfigError(f"profile {path.stem}: {exc}") from exc
    if profile.id != path.stem:
        raise ConfigError(f"{path.name}: id {profile.id!r} must match the file name")
    _check(profile)
    return profile


@dataclass(frozen=True)
class ProfileSet:
    profiles: dict[ProfileId, Profile]

    @classmethod
    def load(cls, directory: Path = PROFILES_DIR) -> ProfileSet:
        loaded = {ProfileId(p.stem): load_profile(p) for p in sorted(directory.glob("*.toml"))}
        issuers = {p.issuer for p in loaded.values() if p.kind.is_ca}
        for p in loaded.values():
            if p.kind in {ProfileKind.SUBSCRIBER, ProfileKind.TSU} and p.issuer not in issuers:
                raise ConfigError(f"profile {p.id}: issuer {p.issuer!r} has no CA profile")
        return cls(loaded)

    def get(self, profile_id: str) -> Profile:
        profile = self.profiles.get(ProfileId(profile_id))
        if profile is None or profile.kind is not ProfileKind.SUBSCRIBER:
            raise SceauError(ErrorKind.UNKNOWN_PROFILE, f"unknown profile {profile_id!r}")
        return profile

    def subscriber_profiles(self) -> list[Profile]:
        return [p for p in self.profiles.values() if p.kind is ProfileKind.SUBSCRIBER]

    def ca_profiles(self) -> list[Profile]:
        """CA profiles, the root first, so that a key ceremony can walk them in order."""
        cas = [p for p in self.profiles.values() if p.kind.is_ca]
        return sorted(cas, key=lambda p: (p.kind is not ProfileKind.ROOT, p.id))

    def signer_profile(self, kind: ProfileKind) -> Profile:
        for p in self.profiles.values():
            if p.kind is kind:
                return p
        raise ConfigError(f"no {kind} profile under policies/profiles")

    def ca_profile(self, issuer: IssuerId) -> Profile:
        for p in self.ca_profiles():
            if p.issuer == issuer:
                return p
        raise ConfigError(f"no CA profile for issuer {issuer!r}")
