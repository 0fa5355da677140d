"""The signing service as the CA's key custodian (``pki.custody.KeyCustodian``): a
subscriber key generated in our token is recorded as a credential of this service before
the key exists, bound to its certificate when the CA issues it, and destroyed when the CA
gives up."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit
from core.accounts.clients import Client
from core.config import SigningConfig
from core.errors import ErrorKind, SceauError
from core.hsm.keystore import KeyNotFoundError, KeyStore
from core.store.db import Database
from core.store.models import AuditEvent, Credential
from pki.custody import NewKey
from pki.profiles import Profile

log = logging.getLogger(__name__)


def credential_key_label(credential_id: str) -> str:
    """The token label of a credential's key: found from the credential id alone."""
    return f"subscriber-{credential_id}"


class CredentialCustodian:
    def __init__(self, db: Database, keys: KeyStore, config: SigningConfig) -> None:
        self.db = db
        self.keys = keys
        self.config = config

    def check_reachable(self, profile: Profile, subject: Mapping[str, Any]) -> None:
        """A qualified (SCAL2) key signs only after its owner's one-time code: refuse to
        create one whose owner the configured OTP channel cannot reach ([signing])."""
        field = self.config.otp_address
        if not profile.qscd or field is None:
            return
        if not subject.get(field):
            raise SceauError(
                ErrorKind.PROOF_NOT_USABLE,
                f"profile {profile.id} keys sign only after a one-time code sent by "
                f"{self.config.otp_channel}: the identity proof has no subject.{field} to "
                "send it to",
            )

    def create(self, client: Client, profile: Profile, now: datetime) -> NewKey:
        """Record the credential, then generate its key pair in the token (sensitive, never
        extractable): every key in the token has a row that names it."""
        algorithm = profile.hsm_key_algorithm
        if algorithm is None:  # ProfileSet refuses an hsm profile without one; for mypy
            raise SceauError(ErrorKind.INVALID, f"profile {profile.id} has no hsm_key_algorithm")
        credential_id = "cred-" + secrets.token_hex(16)
        label = credential_key_label(credential_id)
        with self.db.write() as session:
            session.add(
                Credential(
                    id=credential_id,
                    client_id=client.id,
                    certificate_id=None,
                    key_label=label,
                    key_algorithm=algorithm.value,
                    status="pending",
                    # EN 419 241-1: a QSCD key needs sole control (SCAL2); the others may
                    # be used on the platform's own authority (SCAL1).
                    scal=2 if profile.qscd else 1,
                    created_at=now,
                    destroyed_at=None,
                )
            )
        try:
            public_key = self.keys.generate(label, algorithm)
        except BaseException:
            with self.db.write() as session:  # the clean-up job checks the token
                _mark(session, credential_id, "unused", None)
            raise
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return NewKey(credential_id, spki)

    def activate(self, session: Session, credential_id: str, certificate_id: int) -> None:
        session.execute(
            update(Credential)
            .where(Credential.id == credential_id)
            .values(certificate_id=certificate_id, status="active")
        )

    def discard(self, client: Client, credential_id: str, now: datetime) -> None:
        """Destroy the key of a failed issuance; if the token refuses, the row says
        "unused" so that the key clean-up finds it."""
        try:
            self.keys.destroy(credential_key_label(credential_id))
            status, destroyed_at = "destroyed", now
        except SceauError:
            log.exception("could not destroy key of failed credential %s", credential_id)
            status, destroyed_at = "unused", None
        with self.db.write() as session:
            _mark(session, credential_id, status, destroyed_at)
            audit.append(
                session,
                actor=client.actor,
                action="credential.discarded",
                at=now,
                details={"credential": credential_id, "key": status},
            )


def _mark(session: Session, credential_id: str, status: str, destroyed_at: datetime | None) -> None:
    session.execute(
        update(Credential)
        .where(Credential.id == credential_id)
        .values(status=status, destroyed_at=destroyed_at)
    )


# -- keys in the token that no record names ------------------------------------------------

KEY_PREFIX = "subscriber-"
ORPHAN_GRACE = timedelta(hours=24)  # between the first report of a key and its destruction
SWEEP_ACTOR = "system:key-sweep"


@dataclass(frozen=True)
class OrphanKey:
    label: str
    first_seen: datetime


def orphan_keys(db: Database, keys: KeyStore, *, now: datetime) -> list[OrphanKey]:
    """Subscriber keys in the token that no credential row names, with when a sweep first
    reported each (``now`` for one never reported). A key's row is written before the key
    is generated, so an issuance in progress never shows here: what does is a key left by
    an older release, or by a row removed behind our back."""
    labels = keys.private_key_labels(KEY_PREFIX)
    with db.read() as session:
        named = set(session.scalars(select(Credential.key_label)))
        reported = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "credential.orphan_key")
        ).all()
    first_seen = {e.details["key"]: e.at for e in reported}
    return [OrphanKey(label, first_seen.get(label, now)) for label in labels if label not in named]


def sweep_orphan_keys(
    db: Database, keys: KeyStore, *, now: datetime, grace: timedelta = ORPHAN_GRACE
) -> list[OrphanKey]:
    """Report each orphan key once (an audit event), and destroy those reported at least
    ``grace`` ago (another event); returns the keys destroyed."""
    destroyed = []
    for orphan in orphan_keys(db, keys, now=now):
        if orphan.first_seen == now:
            _record(db, "credential.orphan_key", orphan.label, now)
            log.warning("subscriber key with no credential row found in the token")
        if orphan.first_seen <= now - grace:
            with contextlib.suppress(KeyNotFoundError):  # gone since the listing
                keys.destroy(orphan.label)
            _record(db, "credential.orphan_key_destroyed", orphan.label, now)
            destroyed.append(orphan)
    return destroyed


def _record(db: Database, action: str, label: str, now: datetime) -> None:
    with db.write() as session:
        audit.append(session, actor=SWEEP_ACTOR, action=action, at=now, details={"key": label})
