"""What the issuance pipeline asks of the services that own the other rows of an issuance.

The CA writes certificate rows only. A key generated in our token for a subscriber is the
signing service's (its credential row, its clean-up), and the identity-proof record's
retention is the RA's; ``sceau/`` wires an implementation of each into the CA service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from core.accounts.clients import Client
from pki.profiles import Profile


@dataclass(frozen=True)
class NewKey:
    """A subscriber key just generated in the token, recorded, not yet certified."""

    credential_id: str
    spki_der: bytes


class KeyCustodian(Protocol):
    """Keeps the subscriber keys generated in our token (the signing service)."""

    def check_reachable(self, profile: Profile, subject: Mapping[str, Any]) -> None:
        """Refuse (SceauError) a key whose owner could never authorize a signature."""
        ...

    def create(self, client: Client, profile: Profile, now: datetime) -> NewKey:
        """Record a credential, then generate its key pair in the token."""
        ...

    def activate(self, session: Session, credential_id: str, certificate_id: int) -> None:
        """Bind the credential to its certificate, inside the issuance transaction."""
        ...

    def discard(self, client: Client, credential_id: str, now: datetime) -> None:
        """The certificate will never exist: destroy the key (or leave it to the sweep)."""
        ...


class IssuanceListener(Protocol):
    """Told of each issued certificate inside the issuance transaction (RA retention)."""

    def __call__(self, session: Session, proof_id: str, not_after: datetime) -> None: ...
