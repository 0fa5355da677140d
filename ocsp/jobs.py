"""The responder's scheduled jobs, run by one instance of a cluster at a time (core.jobs).

* ``ocsp-presign``: signs a response for every unexpired certificate that has none, and
  re-signs those past half their validity, so that requests find them in the database;
  then deletes the responses no client may use any more.
* ``ocsp-revocations``: every second, re-signs the responses of certificates revoked in
  the last few seconds (revocation deleted them), so that the database holds the revoked
  answer at once even if no client has asked yet. (Clients asking sooner get it signed
  on the spot: this only saves them the wait.)
* ``ocsp-responders``: certifies a new delegated responder for a CA whose responder
  certificate has less than a third of its validity left (RFC 9919 section 2.2.2: short
  lived, renewed regularly). Responses switch to it as each worker reloads its signers.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from core.jobs import JobRunner
from ocsp.engine import Engine
from pki.context import PkiContext
from pki.profiles import ProfileKind
from pki.signers import certify_signer, current_signer
from pki.status import StatusSource

log = logging.getLogger(__name__)

PRESIGN_BATCH = 200
REVOCATION_CHECK = timedelta(seconds=1)
# Revocations this recent are looked for at each check: several checks, so that one
# missed tick (the lease held elsewhere, a slow run) loses nothing. Older ones without a
# response are the pre-signing job's.
REVOCATION_WINDOW = timedelta(seconds=30)
RESPONDER_CHECK = timedelta(hours=1)
RENEWAL_ACTOR = "service:ocsp-renewal"


def presign_due(
    engine: Engine, source: StatusSource, validity: timedelta, *, now: datetime, budget: timedelta
) -> int:
    """Sign what is due, until done or ``budget`` has passed (the rest waits for the next
    run; the lease of this run lapses after the same time). Returns responses signed."""
    started = time.monotonic()
    signed = 0
    for issuer_id in engine.index.ids():
        while (elapsed := time.monotonic() - started) < budget.total_seconds():
            # Each batch is dated by when it is signed, not when the run began.
            current = now + timedelta(seconds=elapsed)
            serials = source.needing_response(
                issuer_id, now=current, fresh_until=current + validity / 2, limit=PRESIGN_BATCH
            )
            for serial in serials:
                signed += engine.presign(issuer_id, serial, now=current)
            if len(serials) < PRESIGN_BATCH:
                break
    purged = engine.store.purge(before=now)
    if signed or purged:
        log.info("OCSP pre-signing: %d responses signed, %d expired ones deleted", signed, purged)
    return signed


def resign_revoked(engine: Engine, source: StatusSource, *, now: datetime) -> int:
    """Re-sign the responses of certificates revoked within REVOCATION_WINDOW whose stored
    responses predate the revocation (the CA writes no OCSP row: this is how a revocation
    reaches the pre-signed responses)."""
    signed = 0
    for issuer_id in engine.index.ids():
        for serial in source.revoked_since_response(
            issuer_id, since=now - REVOCATION_WINDOW, limit=PRESIGN_BATCH
        ):
            # thisUpdate has whole seconds: a row of the revocation's second may be either.
            if engine.stored_disagrees(issuer_id, serial):
                signed += engine.presign(issuer_id, serial, now=now)
    return signed


def renew_responders(ctx: PkiContext, engine: Engine, *, now: datetime) -> list[str]:
    """Certify a fresh responder for each CA whose responder is missing or in the last third
    of its validity; returns the CAs renewed."""
    profiles = ctx.profiles
    profile = profiles.signer_profile(ProfileKind.OCSP_RESPONDER)
    threshold = timedelta(days=profile.validity_days) / 3
    renewed: list[str] = []
    for ca_profile in profiles.ca_profiles():
        issuer_id = ca_profile.issuer
        signer = current_signer(ctx.db, ProfileKind.OCSP_RESPONDER, issuer_id, now)
        if signer is not None and signer.not_after - now >= threshold:
            continue
        new = certify_signer(
            ctx.config, ctx.db, ctx.keys, profile, issuer_id, now=now, actor=RENEWAL_ACTOR
        )
        log.info("OCSP responder of %s renewed: key %s", issuer_id, new.key_label)
        renewed.append(issuer_id)
    if renewed:
        engine.responders.forget()  # this worker at once; the others within a minute
    return renewed


def register_jobs(runner: JobRunner, ctx: PkiContext, engine: Engine, source: StatusSource) -> None:
    interval = timedelta(minutes=ctx.config.ocsp.presign_interval_minutes)
    validity = timedelta(hours=ctx.config.ocsp.response_validity_hours)

    def presign(now: datetime) -> None:
        presign_due(engine, source, validity, now=now, budget=interval * 0.8)

    def revocations(now: datetime) -> None:
        resign_revoked(engine, source, now=now)

    def responders(now: datetime) -> None:
        renew_responders(ctx, engine, now=now)

    runner.every("ocsp-presign", interval, presign)
    runner.every("ocsp-revocations", REVOCATION_CHECK, revocations)
    runner.every("ocsp-responders", RESPONDER_CHECK, responders)
