"""OTP channels: how a one-time code reaches a credential's owner (sole control, SCAL2).

Production plugs an e-mail or SMS gateway in behind ``OtpSender``; development writes
each code to a file under the home, which the tests read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class OtpSender(Protocol):
    def send(self, credential_id: str, code: str) -> None:
        """Deliver ``code`` to the owner of ``credential_id``; never log it."""


class FileOtpSender:
    """Development channel: ``<outbox>/<credential id>.otp``, mode 0600, newest code only."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    def send(self, credential_id: str, code: str) -> None:
        self.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.outbox / f"{credential_id}.otp"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(code)
