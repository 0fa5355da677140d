"""The audit checkpoints' timestamper in a process that also runs our TSA (development, and
`sceau audit checkpoint`): the TSA engine answers without HTTP.

A module of its own, so that a command that only needs it does not import every service.
"""

from __future__ import annotations

from audit.checkpoint_job import CLIENT
from tsa.authority import TimestampAuthority


class LocalTimestamper:
    """The audit checkpoints' Timestamper answered by this process's TSA engine, no HTTP."""

    def __init__(self, authority: TimestampAuthority) -> None:
        self.authority = authority

    def timestamp(self, request: bytes) -> bytes:
        answer, _failure = self.authority.respond(request, client=CLIENT)
        return answer  # a rejection is a TimeStampResp too; the maker reads its status
