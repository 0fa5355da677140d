"""Development key ceremony: the root and issuing CA keys generated in the token, their
certificates issued and recorded. Idempotent: what exists is kept, what is missing is made.

A real ceremony (dual control, offline root) is a procedure around these same steps; the
code refuses to replace a CA that already has a certificate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from audit.checkpoints import ensure_audit_key
from core import audit
from core.config import SceauConfig
from core.hsm.envelope import ensure_secret_keys
from core.hsm.keystore import KeyStore
from core.store.db import Database
from core.store.models import Issuer
from pki.issuers import IssuerRegistry
from pki.names import organisation_name
from pki.profiles import Profile, ProfileKind, ProfileSet
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


@dataclass
class Ceremony:
    """One run of the ceremony: what it works on, when, and who it is recorded as."""

    config: SceauConfig
    db: Database
    keys: KeyStore
    profiles: ProfileSet
    now: datetime
    actor: str

    def __post_init__(self) -> None:
        # Certificate times have a one-second resolution: every step states the same one.
        self.now = self.now.replace(microsecond=0)

    def run(self) -> list[str]:
        """Create every missing key and CA; return what was done, one line per step."""
        with self.db.write() as session:
            audit.ensure_head(session)
        done = self.secret_keys()
        registry = IssuerRegistry(self.db)
        for profile in self.profiles.ca_profiles():
            done += self.ca(profile, registry)
        done += self.signers()
        # The key that signs audit checkpoints (audit/checkpoints.py); its public key goes
        # into the audit log itself.
        done += ensure_audit_key(
            self.db, self.keys, self.config.audit.key_label, now=self.now, actor=self.actor
        )
        return done

    def secret_keys(self) -> list[str]:
        """The token's secret keys that seal evidence at rest."""
        done = []
        for label in ensure_secret_keys(self.keys):
            done.append(f"secret key {label} in token {self.config.hsm.token_label}")
            with self.db.write() as session:
                self._audit(
                    session, "key.generated", {"key_label": label, "purpose": "evidence sealing"}
                )
        return done

    def ca(self, profile: Profile, registry: IssuerRegistry) -> list[str]:
        """The CA of ``profile``: its key in the token, its certificate, its record."""
        issuer_id = profile.issuer
        with self.db.read() as session:
            existing = session.get(Issuer, issuer_id)
        if existing is not None and existing.certificate is not None:
            return []
        (algorithm,) = profile.key_algorithms
        label = ca_key_label(issuer_id)
        # A key left by an interrupted ceremony is reused: it never left the token.
        keys = self.keys
        public_key = (
            keys.public_key(label) if keys.has_key(label) else keys.generate(label, algorithm)
        )
        parent = None if profile.kind is ProfileKind.ROOT else registry.get("root")
        subject = organisation_name(self.config, profile.common_name)
        arc = self.config.ca.policy_arc
        tbs, der = certify_own_key(
            self.config,
            keys,
            profile,
            public_key,
            policies=[] if parent is None else _issuing_policies(self.profiles, issuer_id, arc),
            issuer=parent,
            self_label=label,
            now=self.now,
        )
        with self.db.write() as session:
            row = session.get(Issuer, issuer_id) or Issuer(id=issuer_id)
            row.profile = profile.id
            row.key_label = label
            row.key_algorithm = algorithm.value
            row.certificate = der
            row.subject = subject.human_friendly
            row.parent_id = parent.id if parent else None
            row.created_at = self.now
            session.merge(row)
            details = {"issuer": issuer_id, "key_label": label, "algorithm": algorithm.value}
            details["subject"] = subject.human_friendly
            details["serial"] = format(tbs["serial_number"].native, "x")
            self._audit(session, "ca.created", details)
        registry.reload()
        return [
            f"key {label} ({algorithm}) in token {self.config.hsm.token_label}",
            f"certificate for {issuer_id}: {subject.human_friendly}",
        ]

    def signers(self) -> list[str]:
        """The TSU (certified by its profile's issuer) and one OCSP responder per CA."""
        tsu = self.profiles.signer_profile(ProfileKind.TSU)
        responder = self.profiles.signer_profile(ProfileKind.OCSP_RESPONDER)
        wanted = [(tsu, tsu.issuer)] + [(responder, p.issuer) for p in self.profiles.ca_profiles()]
        done = []
        for profile, issuer_id in wanted:
            current = current_signer(self.db, profile.kind, issuer_id, self.now)
            # A changed [tsa] key_algorithm takes effect here, with a new key and certificate.
            algorithm = signer_key_algorithm(self.config, profile)
            if current is None or current.key_algorithm != algorithm:
                signer = certify_signer(
                    self.config,
                    self.db,
                    self.keys,
                    profile,
                    issuer_id,
                    now=self.now,
                    actor=self.actor,
                )
                done.append(f"{profile.kind} certificate from {issuer_id} (key {signer.key_label})")
        return done

    def _audit(self, session: Session, action: str, details: dict[str, str]) -> None:
        audit.append(session, actor=self.actor, action=action, at=self.now, details=details)
