"""Development key ceremony: the root and issuing CA keys generated in the token, their
certificates issued and recorded. Idempotent: what exists is kept, what is missing is made.

A real ceremony (dual control, offline root) is a procedure around these same steps; the
code refuses to replace a CA that already has a certificate.
"""

from __future__ import annotations

import logging
from datetime import datetime

from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca import audit
from ca.algorithms import default_scheme
from ca.config import SceauConfig
from ca.errors import ConfigError
from ca.hsm import KeyStore
from ca.issuers import IssuerRegistry
from ca.lints.prelint import lint_tbs
from ca.profiles import Profile, ProfileKind, ProfileSet
from ca.store.db import Database
from ca.store.models import Issuer
from ca.tbs import TbsRequest, Urls, assemble, build_tbs

log = logging.getLogger(__name__)


def ca_key_label(issuer_id: str) -> str:
    return f"sceau-ca-{issuer_id}"


def ca_subject(config: SceauConfig, profile: Profile) -> ax509.Name:
    attributes = {
        "country_name": config.ca.country,
        "organization_name": config.ca.organization,
        "common_name": f"{config.ca.organization} {profile.common_name}",
    }
    if config.ca.organization_identifier:
        attributes["organization_identifier"] = config.ca.organization_identifier
    return ax509.Name.build(attributes)


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
    urls = Urls(config.service.base_url.rstrip("/"), config.service.documents_base)
    registry = IssuerRegistry(db)
    now = now.replace(microsecond=0)
    with db.write() as session:
        audit.ensure_head(session)
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
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        subject = ca_subject(config, profile)
        policies = (
            [] if parent is None else _issuing_policies(profiles, issuer_id, config.ca.policy_arc)
        )
        tbs = build_tbs(
            TbsRequest(
                profile=profile,
                subject=subject,
                spki_der=spki,
                serial=x509.random_serial_number(),
                not_before=now,
                policy_oids=policies,
                issuer=parent.info if parent else None,
            ),
            urls,
        )
        tbs_der = bytes(tbs.dump())
        findings = lint_tbs(tbs_der, profile, frozenset(config.lint.accept_findings))
        if findings:
            raise ConfigError(
                f"CA certificate {issuer_id} fails lint: " + "; ".join(map(str, findings))
            )
        scheme = parent.info.scheme if parent else default_scheme(algorithm)
        signer = parent.key_label if parent else label
        der = assemble(tbs_der, scheme, keys.sign(signer, tbs_der, scheme))
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
    return done
