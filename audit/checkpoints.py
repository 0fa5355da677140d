"""Signed, timestamped checkpoints of the audit log, and the verification of the whole log.

A checkpoint states the size of the log, the RFC 9162 Merkle root of its events (core.audit.merkle;
leaves are the events' chain hashes), the chain head and the time. The audit key (EC P-256,
generated in the token by the key ceremony, never extractable) signs that statement, and
our TSA timestamps the signature (RFC 3161), so a checkpoint proves what the log held and
when, and a later truncation (deleting the newest events and rewinding the head row, which
the hash chain alone cannot see) is caught by the checkpoint that covered them.

ca/ may not import tsa/: the TSA is a :class:`Timestamper` handed in (tsa/checkpoint_job.py
in the TSA service, sceau/cli.py for ``sceau audit checkpoint``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from asn1crypto import tsp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.audit import merkle
from core.audit.token_check import TimestampInvalid, verify_token
from core.errors import ErrorKind, SceauError
from core.hsm.algorithms import KeyAlgorithm, default_scheme
from core.hsm.keystore import KeyStore
from core.store.db import Database
from core.store.models import AuditCheckpoint, AuditEvent, AuditHead, Issuer

log = logging.getLogger(__name__)

STATEMENT_HEADER = "sceau audit checkpoint v1"
KEY_PURPOSE = "audit checkpoints"
KEY_ALGORITHM = KeyAlgorithm.EC_P256
# The timestamp is asked for right after signing; a genTime further from the checkpoint's
# own time than this means one of the two clocks was wrong or the token belongs elsewhere.
TIME_TOLERANCE = timedelta(minutes=10)


class Timestamper(Protocol):
    """Our TSA, in-process or remote: a DER TimeStampReq in, a DER TimeStampResp out."""

    def timestamp(self, request: bytes) -> bytes: ...


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


# --- the audit key -----------------------------------------------------------------------


def ensure_audit_key(
    db: Database, keys: KeyStore, label: str, *, now: datetime, actor: str
) -> list[str]:
    """Generate the audit key in the token if missing, and record its public key in the
    audit log itself (action key.generated): verification finds it there, hash-chained
    and inside the first checkpoint, without a certificate (see README, "Audit trail")."""
    done: list[str] = []
    if not keys.has_key(label):
        keys.generate(label, KEY_ALGORITHM)
        done.append(f"audit key {label} ({KEY_ALGORITHM})")
    spki = keys.public_key(label).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with db.write() as session:
        audit.ensure_head(session)
        if audit_keys(session).get(label) == spki:
            return done
        audit.append(
            session,
            actor=actor,
            action="key.generated",
            at=now,
            details={
                "key_label": label,
                "purpose": KEY_PURPOSE,
                "algorithm": KEY_ALGORITHM.value,
                "public_key": base64.b64encode(spki).decode(),
                "fingerprint": fingerprint(spki),
            },
        )
    done.append(f"audit key {label} recorded in the audit log (SHA-256 {fingerprint(spki)})")
    return done


def _key_of(event: AuditEvent) -> tuple[str, bytes] | None:
    d = event.details
    if event.action != "key.generated" or d.get("purpose") != KEY_PURPOSE:
        return None
    try:
        return str(d["key_label"]), base64.b64decode(d["public_key"], validate=True)
    except (KeyError, ValueError, TypeError):
        return None


def audit_keys(session: Session) -> dict[str, bytes]:
    """Audit key label -> SubjectPublicKeyInfo DER, as recorded in the log."""
    found: dict[str, bytes] = {}
    for ev in session.scalars(
        select(AuditEvent).where(AuditEvent.action == "key.generated").order_by(AuditEvent.seq)
    ):
        key = _key_of(ev)
        if key is not None:
            found[key[0]] = key[1]
    return found


# --- the statement -----------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    tree_size: int
    root_hash: str
    head_hash: str
    at: datetime
    key_label: str

    def encode(self) -> bytes:
        return (
            f"{STATEMENT_HEADER}\ntree_size: {self.tree_size}\nroot_hash: {self.root_hash}\n"
            f"head_hash: {self.head_hash}\ntime: {self.at.isoformat(timespec='microseconds')}\n"
            f"key: {self.key_label}\n"
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Statement:
        try:
            lines = raw.decode().split("\n")
            if lines[0] != STATEMENT_HEADER or lines[-1] != "" or len(lines) != 7:
                raise ValueError("layout")
            fields = dict(line.split(": ", 1) for line in lines[1:-1])
            statement = cls(
                tree_size=int(fields["tree_size"]),
                root_hash=fields["root_hash"],
                head_hash=fields["head_hash"],
                at=datetime.fromisoformat(fields["time"]),
                key_label=fields["key"],
            )
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a checkpoint statement ({exc})") from None
        if statement.encode() != raw:
            raise ValueError("not a canonical checkpoint statement")
        return statement


@dataclass(frozen=True)
class Trust:
    """What a verifier trusts: the audit public keys (label -> SPKI DER) and our CA
    certificates (the roots anchor the TSU certificate in each timestamp token)."""

    audit_keys: dict[str, bytes]
    roots: list[bytes]
    intermediates: list[bytes]


def ca_certificates(session: Session) -> tuple[list[bytes], list[bytes]]:
    roots: list[bytes] = []
    intermediates: list[bytes] = []
    for issuer in session.scalars(select(Issuer).order_by(Issuer.id)):
        if issuer.certificate is not None:
            (intermediates if issuer.parent_id else roots).append(issuer.certificate)
    return roots, intermediates


def check_checkpoint(cp: AuditCheckpoint, trust: Trust) -> str | None:
    """Why this checkpoint (a row, or one an export recorded) is not good, or None: its
    statement says what its columns say, the audit key signed it, and our TSA timestamped
    that signature near its time."""
    try:
        stated = Statement.decode(cp.statement)
    except ValueError as exc:
        return str(exc)
    if stated != Statement(cp.tree_size, cp.root_hash, cp.head_hash, cp.at, cp.key_label):
        return "its stored fields differ from its signed statement"
    spki = trust.audit_keys.get(cp.key_label)
    if spki is None:
        return f"audit key {cp.key_label!r} is not recorded in the log"
    public_key = serialization.load_der_public_key(spki)
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"audit key {cp.key_label!r} is not an EC key"
    try:
        public_key.verify(cp.signature, cp.statement, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the audit key's signature does not verify"
    try:
        facts = verify_token(
            cp.timestamp_token, cp.signature, roots=trust.roots, intermediates=trust.intermediates
        )
    except TimestampInvalid as exc:
        return f"timestamp: {exc}"
    if abs(facts.gen_time - cp.at) > TIME_TOLERANCE:
        return f"timestamp genTime {facts.gen_time.isoformat()} is far from its time"
    return None


# --- making checkpoints ------------------------------------------------------------------


def _leaf_hashes(session: Session, after: int, upto: int, batch: int = 20000) -> Iterator[bytes]:
    """Leaf hashes of events after..upto in seq order, read by keyset pages."""
    last = after
    while last < upto:
        rows = session.execute(
            select(AuditEvent.seq, AuditEvent.hash)
            .where(AuditEvent.seq > last, AuditEvent.seq <= upto)
            .order_by(AuditEvent.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for seq, digest in rows:
            if seq != last + 1:
                raise SceauError(ErrorKind.CONFLICT, f"audit event {last + 1} is missing")
            last = seq
            yield merkle.leaf_hash(bytes.fromhex(digest))


def load_tree(session: Session, upto: int) -> merkle.Tree:
    return merkle.Tree(list(_leaf_hashes(session, 0, upto)))


def _timestamp_request(signature: bytes, nonce: int) -> bytes:
    return bytes(
        tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": hashlib.sha256(signature).digest(),
                },
                "nonce": nonce,
                "cert_req": True,
            }
        ).dump()
    )


def _token_from(response_der: bytes, nonce: int) -> bytes:
    try:
        resp = tsp.TimeStampResp.load(response_der)
        status = resp["status"]["status"].native
        if status not in ("granted", "granted_with_mods"):
            text = resp["status"]["status_string"].native
            raise SceauError(ErrorKind.HSM, f"the TSA refused the checkpoint: {text}")
        token = resp["time_stamp_token"]
        if token["content"]["encap_content_info"]["content"].parsed["nonce"].native != nonce:
            raise SceauError(ErrorKind.HSM, "the TSA answered another request's nonce")
        return bytes(token.dump())
    except (ValueError, TypeError, KeyError) as exc:
        raise SceauError(ErrorKind.HSM, f"the TSA's answer is malformed ({exc})") from None


@dataclass
class CheckpointMaker:
    """Makes checkpoints. Keeps the Merkle frontier (the O(log n) roots of the complete
    subtrees) of the last checkpoint in memory, so that the next one reads only the newer
    events instead of the whole log."""

    db: Database
    keys: KeyStore
    timestamper: Timestamper
    key_label: str
    _builder: merkle.RootBuilder = field(default_factory=merkle.RootBuilder)

    def due(self, *, every_events: int, interval: timedelta, now: datetime) -> bool:
        """Whether a checkpoint is due: every_events new events, or any new event once the
        last checkpoint is older than interval."""
        with self.db.read() as session:
            head = session.get(AuditHead, 1)
            last = session.scalars(
                select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
            ).first()
        size = head.seq if head else 0
        done = last.tree_size if last else 0
        if size <= done:
            return False
        return size - done >= every_events or last is None or now - last.at >= interval

    def make(self, now: datetime) -> AuditCheckpoint | None:
        """Checkpoint the log as it is now; None when the newest checkpoint covers it."""
        with self.db.read() as session:
            head = session.get(AuditHead, 1)
            if head is None or head.seq == 0:
                return None
            size, head_hash = head.seq, head.hash
            last = session.scalars(
                select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
            ).first()
            if last is not None and last.tree_size >= size:
                return None
            builder = self._builder
            if builder.size > size or (
                last is not None
                and builder.size == last.tree_size
                and builder.root().hex() != last.root_hash
            ):
                builder = merkle.RootBuilder()  # our frontier is not this log's: start over
            for leaf in _leaf_hashes(session, builder.size, size):
                builder.add(leaf)
            roots, intermediates = ca_certificates(session)
        root_hash = builder.root().hex()
        statement = Statement(size, root_hash, head_hash, now, self.key_label)
        raw = statement.encode()
        signature = self.keys.sign(self.key_label, raw, default_scheme(KEY_ALGORITHM))
        nonce = secrets.randbits(64)
        token = _token_from(self.timestamper.timestamp(_timestamp_request(signature, nonce)), nonce)
        try:
            verify_token(token, signature, roots=roots, intermediates=intermediates)
        except TimestampInvalid as exc:
            raise SceauError(ErrorKind.HSM, f"the TSA's token is not valid: {exc}") from None
        row = AuditCheckpoint(
            tree_size=size,
            root_hash=root_hash,
            head_hash=head_hash,
            at=now,
            statement=raw,
            signature=signature,
            key_label=self.key_label,
            signer_id=None,
            timestamp_token=token,
        )
        try:
            with self.db.write() as session:
                session.add(row)
        except IntegrityError:
            return None  # another instance checkpointed this very size first
        self._builder = builder
        log.info("audit checkpoint: %d events, root %s", size, root_hash)
        return row


# --- verifying the log in the database -----------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """The first thing that fails: an event (seq) or a checkpoint (its tree size)."""

    what: str  # "event" | "checkpoint"
    ident: int
    reason: str

    def __str__(self) -> str:
        return f"{self.what} {self.ident}: {self.reason}"


@dataclass
class VerifyReport:
    events: int = 0
    checkpoints: int = 0
    uncovered: int = 0  # events after the newest checkpoint
    failure: Failure | None = None
    keys: dict[str, str] = field(default_factory=dict)  # audit key label -> fingerprint


class _Stop(Exception):  # noqa: N818 - control flow, never escapes this module
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def verify_database(db: Database, *, batch: int = 5000) -> VerifyReport:
    """Check every link of the chain, and every checkpoint (signature, timestamp, and its
    Merkle root and head against the events), in seq order; stop at the first failure."""
    report = VerifyReport()
    with db.read() as session:
        roots, intermediates = ca_certificates(session)
        trust = Trust({}, roots, intermediates)
        checkpoints = list(
            session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size))
        )
        pending = iter(checkpoints)
        nxt = next(pending, None)
        builder = merkle.RootBuilder()

        def visit(ev: AuditEvent) -> None:
            nonlocal nxt
            builder.add(merkle.leaf_hash(bytes.fromhex(ev.hash)))
            key = _key_of(ev)
            if key is not None:
                trust.audit_keys[key[0]] = key[1]
            while nxt is not None and nxt.tree_size <= builder.size:
                cp = nxt
                reason = check_checkpoint(cp, trust)
                if reason is None and cp.tree_size != builder.size:
                    reason = "two checkpoints claim the same size"
                if reason is None and cp.root_hash != builder.root().hex():
                    reason = f"its Merkle root does not match events 1..{cp.tree_size}" + (
                        " (an event at or before it was rewritten)"
                    )
                if reason is None and cp.head_hash != ev.hash:
                    reason = f"its head hash is not event {cp.tree_size}'s hash"
                if reason is not None:
                    raise _Stop(Failure("checkpoint", cp.tree_size, reason))
                report.checkpoints += 1
                nxt = next(pending, None)

        try:
            report.events, broken = audit.verify_chain(session, batch, visit)
        except _Stop as stop:
            report.failure = stop.failure
            return report
        if broken is not None:
            report.failure = Failure("event", broken.seq, broken.reason)
            return report
        if nxt is not None:
            # The chain is whole, yet a signed checkpoint saw more events: the newest ones
            # were deleted and the head rewound.
            report.failure = Failure(
                "event",
                report.events + 1,
                f"missing: checkpoint {nxt.tree_size} (signed {nxt.at.isoformat()}) covers"
                f" events up to {nxt.tree_size}, the log ends at {report.events}",
            )
            return report
        last_size = checkpoints[-1].tree_size if checkpoints else 0
        report.uncovered = report.events - last_size
        report.keys = {k: fingerprint(v) for k, v in trust.audit_keys.items()}
    return report
