"""The audit checkpoint job, run by the TSA service (ca/ may not import tsa/, and the TSA
is where a timestamp is one function call away): every CHECK_INTERVAL, under the cluster
lease, make a checkpoint when [audit] says one is due (ca/checkpoints.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from ca.checkpoints import CheckpointMaker
from ca.config import AuditConfig
from ca.context import ServiceContext
from ca.jobs import JobRunner
from tsa.authority import TimestampAuthority

JOB_NAME = "audit-checkpoint"
# How often the job looks at the log (one read of the head and the newest checkpoint):
# a checkpoint follows checkpoint_every_events new events within this delay.
CHECK_INTERVAL = timedelta(seconds=15)
# The TSA records its tokens under this client name (tsa/records.py), so an auditor can
# match the TSA's own register against the checkpoints.
CLIENT = "audit-checkpoint"


class LocalTimestamper:
    """ca.checkpoints.Timestamper answered by this process's TSA engine, no HTTP."""

    def __init__(self, authority: TimestampAuthority) -> None:
        self.authority = authority

    def timestamp(self, request: bytes) -> bytes:
        answer, _failure = self.authority.respond(request, client=CLIENT)
        return answer  # a rejection is a TimeStampResp too; the maker reads its status


def checkpoint_maker(ctx: ServiceContext, authority: TimestampAuthority) -> CheckpointMaker:
    return CheckpointMaker(
        ctx.db, ctx.keys, LocalTimestamper(authority), key_label=ctx.config.audit.key_label
    )


def register(runner: JobRunner, maker: CheckpointMaker, config: AuditConfig) -> None:
    every = max(1, config.checkpoint_every_events)
    interval = timedelta(minutes=max(1, config.checkpoint_interval_minutes))

    def job(now: datetime) -> None:
        if maker.due(every_events=every, interval=interval, now=now):
            maker.make(now)

    runner.every(JOB_NAME, CHECK_INTERVAL, job)
