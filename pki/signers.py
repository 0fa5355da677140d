"""Delegated signers of ours: the timestamping unit and the per-CA OCSP responders.

Each has a key generated in the token and a certificate from one of our CAs, recorded in
``signers``. Renewal certifies a fresh key; the newest valid row is the one that signs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import random_serial_number
from sqlalchemy import select

from core import audit
from core.config import SceauConfig
from core.errors import ConfigError
from core.hsm.algorithms import KeyAlgorithm, PublicKey, SignatureScheme, default_scheme
from core.hsm.keystore import KeyStore
from core.store.db import Database
from core.store.models import Signer
from pki.issuers import IssuerRegistry, LoadedIssuer
from pki.lints.prelint import lint_tbs
from pki.names import organisation_name
from pki.profiles import Profile, ProfileKind
from pki.tbs import TbsRequest, Urls, assemble, build_tbs


@dataclass(frozen=True)
class ActiveSigner:
    """What a service needs to sign with a delegated signer."""

    id: int
    kind: str
    issuer_id: str
    key_label: str
    key_algorithm: KeyAlgorithm
    scheme: SignatureScheme
    certificate: bytes
    not_after: datetime


def signer_key_algorithm(config: SceauConfig, profile: Profile) -> KeyAlgorithm:
    if profile.kind is ProfileKind.TSU:
        try:
            chosen = KeyAlgorithm(config.tsa.key_algorithm)
        except ValueError:
            raise ConfigError(f"[tsa] key_algorithm {config.tsa.key_algorithm!r} unknown") from None
        if chosen not in profile.key_algorithms:
            raise ConfigError(
                f"[tsa] key_algorithm must be one of {sorted(profile.key_algorithms)}"
            )
        return chosen
    assert profile.hsm_key_algorithm is not None  # checked when the profile loaded
    return profile.hsm_key_algorithm


def certify_own_key(  # noqa: PLR0913 - the key, its profile and its issuer, keyword-only
    config: SceauConfig,
    keys: KeyStore,
    profile: Profile,
    public_key: PublicKey,
    *,
    policies: list[str],
    issuer: LoadedIssuer | None,
    self_label: str,
    now: datetime,
) -> tuple[x509.TbsCertificate, bytes]:
    """Certify a key of ours (a CA, the TSU, an OCSP responder): build the TBS from the
    profile, lint it, sign it with the issuer's key, or with ``self_label`` for the root."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tbs = build_tbs(
        TbsRequest(
            profile=profile,
            subject=organisation_name(config, profile.common_name),
            spki_der=spki,
            serial=random_serial_number(),
            not_before=now,
            policy_oids=policies,
            issuer=issuer.info if issuer else None,
        ),
        Urls(config.service.base_url.rstrip("/"), config.service.documents_base),
    )
    tbs_der = bytes(tbs.dump())
    findings = lint_tbs(tbs_der, profile, frozenset(config.lint.accept_findings))
    if findings:
        raise ConfigError(f"{profile.id} certificate fails lint: " + "; ".join(map(str, findings)))
    if issuer is not None:
        scheme, signer = issuer.info.scheme, issuer.key_label
    else:
        (algorithm,) = profile.key_algorithms
        scheme, signer = default_scheme(algorithm), self_label
    return tbs, assemble(tbs_der, scheme, keys.sign(signer, tbs_der, scheme))


def certify_signer(  # noqa: PLR0913 - dated and attributed, keyword-only
    config: SceauConfig,
    db: Database,
    keys: KeyStore,
    profile: Profile,
    issuer_id: str,
    *,
    now: datetime,
    actor: str,
) -> ActiveSigner:
    """Generate a key in the token, certify it by ``issuer_id``, record and audit it."""
    now = now.replace(microsecond=0)
    issuer = IssuerRegistry(db).get(issuer_id)
    algorithm = signer_key_algorithm(config, profile)
    # A fresh key each time; the random part keeps two certifications in one second apart.
    label = f"sceau-{profile.kind.value}-{issuer_id}-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    public_key = keys.generate(label, algorithm)
    tbs, der = certify_own_key(
        config, keys, profile, public_key, policies=[], issuer=issuer, self_label=label, now=now
    )
    serial = format(tbs["serial_number"].native, "x")
    not_after = tbs["validity"]["not_after"].native
    with db.write() as session:
        row = Signer(
            kind=profile.kind.value,
            issuer_id=issuer_id,
            key_label=label,
            key_algorithm=algorithm.value,
            serial=serial,
            certificate=der,
            not_before=now,
            not_after=not_after,
            created_at=now,
        )
        session.add(row)
        session.flush()
        audit.append(
            session,
            actor=actor,
            action="signer.certified",
            at=now,
            details={
                "kind": profile.kind.value,
                "issuer": issuer_id,
                "serial": serial,
                "key_label": label,
                "algorithm": algorithm.value,
                "not_after": not_after.isoformat(),
            },
        )
        return _active(row)


def current_signer(
    db: Database, kind: ProfileKind, issuer_id: str, now: datetime
) -> ActiveSigner | None:
    """The newest signer of this kind for this CA whose certificate is valid at ``now``."""
    with db.read() as session:
        row = session.scalars(
            select(Signer)
            .where(
                Signer.kind == kind.value,
                Signer.issuer_id == issuer_id,
                Signer.not_before <= now,
                Signer.not_after > now,
            )
            .order_by(Signer.not_before.desc(), Signer.id.desc())
            .limit(1)
        ).first()
        return _active(row) if row is not None else None


def _active(row: Signer) -> ActiveSigner:
    return ActiveSigner(
        id=row.id,
        kind=row.kind,
        issuer_id=row.issuer_id,
        key_label=row.key_label,
        key_algorithm=KeyAlgorithm(row.key_algorithm),
        scheme=default_scheme(KeyAlgorithm(row.key_algorithm)),
        certificate=row.certificate,
        not_after=row.not_after,
    )
