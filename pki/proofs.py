"""The sealed identity-proof record, as the CA reads it: open it, and compute how long it
is kept. Registration (registration/) writes records; issuance only reads the subject."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.errors import ErrorKind, SceauError
from core.hsm.envelope import Sealed, Sealer
from core.store.models import IdentityProof


def owned_proof(session: Session, client_id: int, proof_id: str) -> IdentityProof | None:
    """The proof ``proof_id`` if it is the client's; None when there is none or it is
    another client's, which a client must not tell apart from an unknown one."""
    proof = session.get(IdentityProof, proof_id)
    return proof if proof is not None and proof.client_id == client_id else None


def proof_aad(proof_id: str) -> str:
    """Associated data of a proof's sealed record: it opens on this proof's row only."""
    return f"proof:{proof_id}"


def open_record(sealer: Sealer, proof: IdentityProof) -> dict[str, Any]:
    """The proof's personal data: ``subject`` (the attributes certificates are built from),
    ``document`` and whatever else registration recorded."""
    if proof.sealed is None or proof.wrapped_key is None:
        raise SceauError(
            ErrorKind.CONFLICT, f"identity proof {proof.id} was purged at the end of retention"
        )
    return sealer.open_json(proof_aad(proof.id), Sealed(proof.wrapped_key, proof.sealed))


def add_years(instant: datetime, years: int) -> datetime:
    """The same calendar day ``years`` later (29 February becomes 1 March)."""
    try:
        return instant.replace(year=instant.year + years)
    except ValueError:
        return instant.replace(year=instant.year + years, month=3, day=1)


def retention_end(last_expiry: datetime, years: int) -> datetime:
    """EN 319 411-1 OVR-6.4.6-01: kept ``years`` after the last relying certificate expires."""
    return add_years(last_expiry, years)
