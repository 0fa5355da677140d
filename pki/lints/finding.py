"""What a lint reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from asn1crypto import x509

from pki.profiles import Profile


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.code}{where}: {self.message}"


class Lint(Protocol):
    def __call__(self, tbs: x509.TbsCertificate, profile: Profile) -> list[Finding]: ...
