"""Publish CRLs: read the revoked certificates, sign in the HSM, keep every CRL, audit it.

Scopes. The root publishes one complete CRL, its ARL: the revoked certificates it signed,
which are CA certificates (RFC 5280 section 5; empty while the issuing CAs stand). An
issuing CA publishes one complete CRL, ``<issuer>.crl``, while ``[crl] shards`` is 1. With
N > 1 shards each certificate is fixed at issuance on shard ``serial % N`` and its CRL
distribution point names ``<issuer>-<n>.crl``; that CRL lists exactly its shard, and
``<issuer>.crl`` then lists the certificates issued before sharding (no shard). Every
partition carries an issuingDistributionPoint naming its own URL (RFC 5280 section 5.2.5),
so a relying party never takes a partition for a complete CRL. A shard once published keeps
being published after ``shards`` is lowered: its certificates still point at it.

Expired certificates. A revoked certificate stays on the CRL for good (EN 319 411-2
CSS-6.3.10-03/-04: signatures are checked long after the signing certificate expired), and
every CRL says so with expiredCertsOnCRL set to the CA certificate's notBefore.

Numbers. A CRL number is the publication time in microseconds since 1970, or the previous
number plus one if that is larger, chosen while holding a lock on the issuer's row, in the
transaction that stores the CRL: numbers of a scope strictly increase in the order CRLs are
stored, whatever the instances and their clocks (RFC 5280 section 5.2.3). The unique
constraint on (issuer, shard, number) is the last guard. A CRL built from a snapshot older
than the newest stored one is dropped rather than stored after it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import x509
from sqlalchemy import Connection, func, select

from core import audit
from core.store.models import Certificate, Crl, Issuer, IssuerStatus
from crl.builder import CrlFields, RevokedEntries, sign_crl
from pki.context import PkiContext
from pki.issuers import LoadedIssuer

log = logging.getLogger(__name__)

FULL = -1  # crls.shard of an issuer's <issuer>.crl
JOB_ACTOR = "system:crl-publisher"
# Rows fetched per round trip while streaming the entries: large enough that the round trips
# cost nothing next to the encoding, small enough to keep memory flat.
BATCH_ROWS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class PublishedCrl:
    issuer_id: str
    shard: int
    url: str
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    size: int
    status_epoch: int


@dataclass(frozen=True)
class Snapshot:
    """What one consistent read saw: the issuer's status epoch and the entries it covers."""

    epoch: int
    entries: RevokedEntries


class CrlPublisher:
    """Builds, signs, stores and audits the CRLs of every CA of ours."""

    def __init__(self, ctx: PkiContext, *, actor: str = JOB_ACTOR) -> None:
        self.db = ctx.db
        self.config = ctx.config.crl
        self.issuers = ctx.issuers
        self.keys = ctx.keys
        self.urls = ctx.urls
        self.actor = actor
        # Per issuer, the status epoch up to which publish_changed found nothing left to do.
        self._settled: dict[str, int] = {}

    # -- what to publish ----------------------------------------------------------------

    def scopes(self, issuer: LoadedIssuer) -> list[int]:
        """FULL, the configured shards, and every shard published before."""
        if issuer.parent_id is None:
            return [FULL]  # the root's certificates are CA certificates: never sharded
        wanted = {FULL, *range(self.config.shards if self.config.shards > 1 else 0)}
        with self.db.read() as session:
            wanted.update(
                session.scalars(
                    select(Crl.shard).where(Crl.issuer_id == issuer.id).distinct()
                ).all()
            )
        return sorted(wanted)

    def _complete(self, issuer: LoadedIssuer, shard: int) -> bool:
        """Does this scope cover every certificate of the issuer (no issuingDistributionPoint)?"""
        return shard == FULL and (issuer.parent_id is None or self.config.shards <= 1)

    def url(self, issuer_id: str, shard: int) -> str:
        return self.urls.crl(issuer_id, None if shard == FULL else shard)

    # -- the two ways in: everything, or what changed ------------------------------------

    def publish_all(self, now: datetime) -> list[PublishedCrl]:
        """Every scope of every CA, whether anything changed or not (the schedule, and
        ``sceau crl publish``)."""
        published = []
        for issuer in self.issuers.all():
            for shard in self.scopes(issuer):
                crl = self.publish(issuer, shard, now=now)
                if crl is not None:
                    published.append(crl)
        return published

    def publish_changed(self, now: datetime) -> list[PublishedCrl]:
        """The scopes that have no CRL yet or gained a revocation since their newest CRL.

        Cheap when nothing happened: a read of the small ``issuers`` and ``issuer_status``
        tables, compared with what this process already settled. A revocation bumps its
        issuer's epoch in its own transaction; then the revoked count per shard (revocation
        is final and entries never leave a CRL, so a count that moved means new entries)
        says which scopes to publish again.
        """
        with self.db.read() as session:
            epochs = dict(session.execute(select(IssuerStatus.issuer_id, IssuerStatus.epoch)).all())
        published = []
        for issuer in self.issuers.all():
            epoch = epochs.get(issuer.id, 0)
            if self._settled.get(issuer.id) == epoch:
                continue
            # The counts are read after the epoch, so they include every revocation it counts.
            counts = self._revoked_counts(issuer.id)
            for shard in self.scopes(issuer):
                newest = self._newest(issuer.id, shard)
                if newest is not None and (
                    newest[0] >= epoch or newest[1] == self._scope_count(issuer, shard, counts)
                ):
                    continue
                crl = self.publish(issuer, shard, now=now)
                if crl is not None:
                    published.append(crl)
            self._settled[issuer.id] = epoch
        return published

    def _revoked_counts(self, issuer_id: str) -> dict[int | None, int]:
        with self.db.read() as session:
            rows = session.execute(
                select(Certificate.crl_shard, func.count())
                .where(Certificate.issuer_id == issuer_id, Certificate.status == "revoked")
                .group_by(Certificate.crl_shard)
            )
            return dict(rows.all())

    def _scope_count(self, issuer: LoadedIssuer, shard: int, counts: dict[int | None, int]) -> int:
        if self._complete(issuer, shard):
            return sum(counts.values())
        return counts.get(None if shard == FULL else shard, 0)

    def _newest(self, issuer_id: str, shard: int) -> tuple[int, int] | None:
        """(status epoch, entries) of the scope's newest CRL, without its DER."""
        with self.db.read() as session:
            row = session.execute(
                select(Crl.status_epoch, Crl.entries)
                .where(Crl.issuer_id == issuer_id, Crl.shard == shard)
                .order_by(Crl.number.desc())
                .limit(1)
            ).first()
            return None if row is None else (row.status_epoch, row.entries)

    # -- one CRL ----------------------------------------------------------------------

    def publish(self, issuer: LoadedIssuer, shard: int, *, now: datetime) -> PublishedCrl | None:
        """Build, sign and store the CRL of one scope; None when a CRL built from a newer
        snapshot was stored while this one was being built."""
        # 1. Read the status epoch and the entries in one snapshot.
        snapshot = self.read(issuer, shard)
        # 2. Number, times and signature under the issuer's lock; store and audit.
        return self.store(issuer, shard, snapshot, now=now)

    def read(self, issuer: LoadedIssuer, shard: int) -> Snapshot:
        """The issuer's status epoch and the revoked certificates of the scope, as of one
        moment, the entries encoded as they stream in (memory grows with the CRL only)."""
        query = select(
            Certificate.serial,
            Certificate.revoked_at,
            Certificate.revocation_reason,
            Certificate.invalidity_date,
        ).where(Certificate.issuer_id == issuer.id, Certificate.status == "revoked")
        if not self._complete(issuer, shard):
            query = query.where(
                Certificate.crl_shard.is_(None) if shard == FULL else Certificate.crl_shard == shard
            )
        entries = RevokedEntries()
        with _consistent_read(self.db.engine.connect()) as conn:
            epoch = conn.execute(
                select(IssuerStatus.epoch).where(IssuerStatus.issuer_id == issuer.id)
            ).scalar()
            rows = conn.execution_options(yield_per=BATCH_ROWS).execute(query)
            for serial, revoked_at, reason, invalidity_date in rows:
                assert revoked_at is not None  # pki.revocation.revoke sets it with the status
                entries.add(serial, revoked_at, reason, invalidity_date)
        return Snapshot(epoch or 0, entries)

    def store(
        self, issuer: LoadedIssuer, shard: int, snapshot: Snapshot, *, now: datetime
    ) -> PublishedCrl | None:
        """Number, date, sign and store ``snapshot`` as the scope's next CRL, and audit it;
        None if a CRL of a newer snapshot was stored first. The snapshot is spent: its
        entries' buffer becomes the CRL."""
        scheme = issuer.info.scheme
        certificate = x509.Certificate.load(issuer.certificate)
        with self.db.write() as session:
            # The issuer's row lock (FOR NO KEY UPDATE on PostgreSQL: certificate inserts,
            # which take KEY SHARE for their foreign key, do not wait; SQLite's write
            # transaction serialises anyway) orders the CRLs of this issuer.
            session.execute(
                select(Issuer.id).where(Issuer.id == issuer.id).with_for_update(key_share=True)
            )
            newest = session.execute(
                select(Crl.number, Crl.this_update, Crl.status_epoch)
                .where(Crl.issuer_id == issuer.id, Crl.shard == shard)
                .order_by(Crl.number.desc())
                .limit(1)
            ).first()
            if newest is not None and newest.status_epoch > snapshot.epoch:
                log.info(
                    "CRL %s not stored: one from a newer snapshot was stored meanwhile",
                    self.url(issuer.id, shard),
                )
                return None
            this_update = now.astimezone(UTC).replace(microsecond=0)
            number = (now - _EPOCH) // _MICROSECOND
            if newest is not None:
                # Never a later CRL with an earlier thisUpdate or a number not above the last.
                this_update = max(this_update, newest.this_update)
                number = max(number, newest.number + 1)
            hours = (
                self.config.arl_next_update_hours
                if issuer.parent_id is None
                else self.config.next_update_hours
            )
            fields = CrlFields(
                issuer=issuer.info.name,
                key_id=issuer.info.key_id,
                scheme=scheme,
                number=number,
                this_update=this_update,
                next_update=this_update + timedelta(hours=hours),
                scope_url=None if self._complete(issuer, shard) else self.url(issuer.id, shard),
                expired_certs_since=certificate.not_valid_before,
            )
            der = sign_crl(
                fields,
                snapshot.entries,
                lambda digest: self.keys.sign_digest(issuer.key_label, digest, scheme),
            )
            published = PublishedCrl(
                issuer_id=issuer.id,
                shard=shard,
                url=self.url(issuer.id, shard),
                number=number,
                this_update=fields.this_update,
                next_update=fields.next_update,
                entries=snapshot.entries.count,
                size=len(der),
                status_epoch=snapshot.epoch,
            )
            session.add(
                Crl(
                    issuer_id=issuer.id,
                    shard=shard,
                    number=number,
                    this_update=published.this_update,
                    next_update=published.next_update,
                    entries=published.entries,
                    status_epoch=snapshot.epoch,
                    der=der,
                    created_at=now,
                )
            )
            audit.append(
                session,
                actor=self.actor,
                action="crl.published",
                at=now,
                details={
                    "issuer": issuer.id,
                    "shard": None if shard == FULL else shard,
                    "url": published.url,
                    "number": number,
                    "this_update": published.this_update.isoformat(),
                    "next_update": published.next_update.isoformat(),
                    "entries": published.entries,
                    "status_epoch": snapshot.epoch,
                    "sha256": hashlib.sha256(der).hexdigest(),
                },
            )
        log.info(
            "published %s: number %d, %d entries, %d bytes",
            published.url,
            number,
            published.entries,
            published.size,
        )
        return published


@contextmanager
def _consistent_read(connection: Connection) -> Iterator[Connection]:
    """One read transaction that sees a single moment. SQLite's read transaction does (WAL
    snapshot); PostgreSQL's default READ COMMITTED takes a snapshot per statement, so the
    epoch and the entries could disagree: REPEATABLE READ makes it one."""
    with connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection
