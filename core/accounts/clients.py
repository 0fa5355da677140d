"""Platform API clients: bearer tokens, stored hashed, each limited to its profiles."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from flask import has_request_context, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core import audit, metrics
from core.accounts.throttle import WINDOW_SECONDS, FailureThrottle
from core.errors import ErrorKind, SceauError
from core.http.service import provided
from core.store.db import Database
from core.store.models import ApiClient

TOKEN_PREFIX = "sceau_"  # noqa: S105 - a prefix that makes leaked tokens greppable


class ProfileCatalogue(Protocol):
    """The certificate profiles a client may be given (``pki.profiles.ProfileSet``)."""

    def get(self, profile_id: str) -> object:
        """The profile, or SceauError(UNKNOWN_PROFILE)."""
        ...


@dataclass(frozen=True)
class Client:
    id: int
    name: str
    profiles: frozenset[str]

    @property
    def actor(self) -> str:
        return f"client:{self.name}"

    def require_profile(self, profile_id: str) -> None:
        if profile_id not in self.profiles:
            raise SceauError(
                ErrorKind.FORBIDDEN, f"client {self.name!r} may not use profile {profile_id!r}"
            )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_client(  # noqa: PLR0913 - every write is dated and attributed: now, actor keyword-only
    db: Database,
    profiles: ProfileCatalogue,
    name: str,
    profile_ids: list[str],
    *,
    now: datetime,
    actor: str,
) -> str:
    """Create a client; return its token, which is shown once and never stored."""
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise SceauError(ErrorKind.INVALID, "client name: 1-64 letters, digits, '-' or '_'")
    if not profile_ids:
        raise SceauError(ErrorKind.INVALID, "a client needs at least one profile")
    for profile_id in profile_ids:
        profiles.get(profile_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with db.write() as session:
            client = ApiClient(
                name=name,
                token_hash=_hash(token),
                profiles=sorted(set(profile_ids)),
                created_at=now,
            )
            session.add(client)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="client.created",
                at=now,
                details={"client": name, "profiles": sorted(set(profile_ids))},
            )
    except IntegrityError as exc:
        raise SceauError(ErrorKind.CONFLICT, f"a client named {name!r} exists already") from exc
    return token


_LOOPBACK = frozenset({"127.0.0.1", "::1"})


def authenticate(db: Database, authorization: str | None) -> Client:
    """Resolve an ``Authorization: Bearer`` header to an enabled client, or raise: 401 for
    a missing, unknown or disabled token, 429 once the caller's address failed too often."""
    # Each service has its own throttle (core.http.service); outside a request, none.
    throttle = provided(FailureThrottle) if has_request_context() else None
    address = client_address()
    wait = throttle.retry_after(address, time.monotonic()) if throttle else None
    if wait is not None:
        metrics.AUTH_THROTTLED.inc()
        raise SceauError(
            ErrorKind.THROTTLED,
            "too many failed token attempts from this address; retry later",
            retry_after=wait,
        )
    try:
        return _client(db, authorization)
    except SceauError as exc:
        if exc.kind is ErrorKind.UNAUTHENTICATED:
            metrics.AUTH_FAILURES.inc()
            if throttle is not None and throttle.failed(address, time.monotonic()):
                _record_burst(db, address, throttle.limit)
        raise


def client_address() -> str:
    """The caller's address: the one nginx saw (the last X-Forwarded-For hop it added)
    when the request comes through a proxy on this host, else the peer's."""
    if not has_request_context():
        return ""
    peer = request.remote_addr or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if peer in _LOOPBACK and forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64]
    return peer


def _record_burst(db: Database, address: str, limit: int) -> None:
    """One audit event when an address reaches the limit (not one per refused request)."""
    with db.write() as session:
        audit.append(
            session,
            actor="anonymous",
            action="client.auth_throttled",
            at=datetime.now(UTC),
            details={"from": address, "failures": limit, "window_seconds": WINDOW_SECONDS},
        )


def _client(db: Database, authorization: str | None) -> Client:
    if not authorization:
        raise SceauError(ErrorKind.UNAUTHENTICATED, "missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        raise SceauError(ErrorKind.UNAUTHENTICATED, "expected Authorization: Bearer sceau_...")
    digest = _hash(token.strip())
    with db.read() as session:
        row = session.scalars(select(ApiClient).where(ApiClient.token_hash == digest)).first()
    # The lookup is by hash, so timing reveals nothing of the token; compare anyway.
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.disabled_at:
        raise SceauError(ErrorKind.UNAUTHENTICATED, "unknown or disabled API token")
    return Client(id=row.id, name=row.name, profiles=frozenset(row.profiles))
