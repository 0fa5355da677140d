"""Development key ceremony: the root and issuing CA keys generated in the token, their
certificates issued and recorded. Idempotent: what exists is kept, what is missing is made.

A real ceremony (dual control, offline root) is a procedure around these same steps; the
code refuses to replace a CA that already has a certificate.
"""

from __future__ import annotations

import logging
from datetime import datetime

from audit.checkpoints import ensure_audit_key
from core import audit
from core.config import SceauConfig
from core.hsm.envelope import ensure_secret_keys
from core.hsm.keystore import KeyStore
from core.store.db import Database
from core.store.models import Issuer
from pki.issuers import IssuerRegistry
from pki.names import organisation_name
from pki.profiles import ProfileKind, ProfileSet
from pki.signers import certify_own_key, certify_signer, current_signer, signer_key_algorithm

log = logging.getLogger(__name__)


def ca_key_label(issuer_id: str) -> str:
    return f"sceau-ca-{issuer_id}"


def _issuing_policies(profiles: ProfileSet, issuer_id: str, arc: str) -> list[str]:
    """An issuing CA asserts exactly the policies of the profiles it signs (in order)."""
    oids: list[str] = []
    for p in profiles.subscriber_profiles():
        if p.issuer == issuer_id:
            oids.extend(o for o in p.policy_oid_list(arc) if o not in oids)
    return oids


def run_ceremony(
    config: SceauConfig,
    db: Database,
    keys: KeyStore,
    profiles: ProfileSet,
    *,
    now: datetime,
    actor: str,
) -> list[str]:
    """Create every missing CA; return what was done, one line per step."""
    done: list[str] = []
    registry = IssuerRegistry(db)
    now = now.replace(microsecond=0)
    with db.write() as session:
        audit.ensure_head(session)
    for label in ensure_secret_keys(keys):
        done.append(f"secret key {label} in token {config.hsm.token_label}")
        with db.write() as session:
            audit.append(
                session,
                actor=actor,
                action="key.generated",
                at=now,
                details={"key_label": label, "purpose": "evidence sealing"},
            )
    for profile in profiles.ca_profiles():
        issuer_id = profile.issuer
        with db.read() as session:
            existing = session.get(Issuer, issuer_id)
        if existing is not None and existing.certificate is not None:
            continue
        (algorithm,) = profile.key_algorithms
        label = ca_key_label(issuer_id)
        # A key left by an interrupted ceremony is reused: it never left the token.
        public_key = (
            keys.public_key(label) if keys.has_key(label) else keys.generate(label, algorithm)
        )
        done.append(f"key {label} ({algorithm}) in token {config.hsm.token_label}")
        parent = None if profile.kind is ProfileKind.ROOT else registry.get("root")
        subject = organisation_name(config, profile.common_name)
        policies = (
            [] if parent is None else _issuing_policies(profiles, issuer_id, config.ca.policy_arc)
        )
        tbs, der = certify_own_key(
            config,
            keys,
            profile,
            public_key,
            policies=policies,
            issuer=parent,
            self_label=label,
            now=now,
        )
        with db.write() as session:
            row = session.get(Issuer, issuer_id) or Issuer(id=issuer_id)
            row.profile = profile.id
            row.key_label = label
            row.key_algorithm = algorithm.value
            row.certificate = der
            row.subject = subject.human_friendly
            row.parent_id = parent.id if parent else None
            row.created_at = now
            session.merge(row)
            audit.append(
                session,
                actor=actor,
                action="ca.created",
                at=now,
                details={
                    "issuer": issuer_id,
                    "key_label": label,
                    "algorithm": algorithm.value,
                    "subject": subject.human_friendly,
                    "serial": format(tbs["serial_number"].native, "x"),
                },
            )
        registry.reload()
        done.append(f"certificate for {issuer_id}: {subject.human_friendly}")
    done += _ensure_signers(config, db, keys, profiles, now=now, actor=actor)
    # The key that signs audit checkpoints (ca/checkpoints.py); its public key goes into
    # the audit log itself.
    done += ensure_audit_key(db, keys, config.audit.key_label, now=now, actor=actor)
    return done


def _ensure_signers(
    config: SceauConfig,
    db: Database,
    keys: KeyStore,
    profiles: ProfileSet,
    *,
    now: datetime,
    actor: str,
) -> list[str]:
    """The TSU (certified by its profile's issuer) and one OCSP responder per CA."""
    tsu = profiles.signer_profile(ProfileKind.TSU)
    responder = profiles.signer_profile(ProfileKind.OCSP_RESPONDER)
    wanted = [(tsu, tsu.issuer)] + [(responder, p.issuer) for p in profiles.ca_profiles()]
    done = []
    for profile, issuer_id in wanted:
        current = current_signer(db, profile.kind, issuer_id, now)
        # A changed [tsa] key_algorithm takes effect here, with a new key and certificate.
        if current is None or current.key_algorithm != signer_key_algorithm(config, profile):
            signer = certify_signer(config, db, keys, profile, issuer_id, now=now, actor=actor)
            done.append(f"{profile.kind} certificate from {issuer_id} (key {signer.key_label})")
    return done
