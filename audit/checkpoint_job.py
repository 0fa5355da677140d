"""The audit checkpoint job: every CHECK_INTERVAL, under the cluster lease, make a
checkpoint when [audit] says one is due (audit/checkpoints.py), timestamped by our TSA
through a :class:`Timestamper`: in-process in development (wired by ``sceau/``), over HTTP
to ``/tsa`` in production (:class:`HttpTimestamper`)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

from audit.checkpoints import CheckpointMaker, Timestamper
from core.context import ServiceContext
from core.errors import ErrorKind, SceauError
from core.jobs import JobRunner

__all__ = [
    "CHECK_INTERVAL",
    "CLIENT",
    "JOB_NAME",
    "Checkpointing",
    "HttpTimestamper",
    "Timestamper",
]

JOB_NAME = "audit-checkpoint"
# How often the job looks at the log (one read of the head and the newest checkpoint):
# a checkpoint follows checkpoint_every_events new events within this delay.
CHECK_INTERVAL = timedelta(seconds=15)
# The TSA records its tokens under this client name (tsa/records.py), so an auditor can
# match the TSA's own register against the checkpoints.
CLIENT = "audit-checkpoint"
TIMEOUT_SECONDS = 10
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Checkpointing:
    """What the audit service's checkpoint job was given: the timestamper to use."""

    timestamper: Timestamper


class HttpTimestamper:
    """Our TSA over RFC 3161's HTTP transport (RFC 3161 section 3.4)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def timestamp(self, request: bytes) -> bytes:
        http_request = urllib.request.Request(  # noqa: S310 - our own configured TSA URL
            self.url,
            data=request,
            headers={"Content-Type": "application/timestamp-query"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(http_request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
                body: bytes = answer.read(MAX_RESPONSE_BYTES + 1)
        except OSError as exc:
            raise SceauError(ErrorKind.UNAVAILABLE, f"the TSA did not answer: {exc}") from exc
        if len(body) > MAX_RESPONSE_BYTES:
            raise SceauError(ErrorKind.UNAVAILABLE, "the TSA answered more than a TimeStampResp")
        return body  # a rejection is a TimeStampResp too; the maker reads its status


def checkpoint_maker(ctx: ServiceContext, timestamper: Timestamper) -> CheckpointMaker:
    return CheckpointMaker(ctx.db, ctx.keys, timestamper, key_label=ctx.config.audit.key_label)


def register_checkpoints(runner: JobRunner, ctx: ServiceContext, timestamper: Timestamper) -> None:
    maker = checkpoint_maker(ctx, timestamper)
    config = ctx.config.audit
    every = max(1, config.checkpoint_every_events)
    interval = timedelta(minutes=max(1, config.checkpoint_interval_minutes))

    def job(now: datetime) -> None:
        if maker.due(every_events=every, interval=interval, now=now):
            maker.make(now)

    runner.every(JOB_NAME, CHECK_INTERVAL, job)
