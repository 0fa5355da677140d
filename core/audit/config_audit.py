"""Configuration changes in the audit log. ``sceau.toml`` is edited outside the software, so
the change is recorded when a service starts on it: the effective configuration (no
secret: PINs and passwords live in the secrets file and are left out here) is compared with
the one the last ``config.loaded`` event recorded, and a new event names the keys that
changed. Two workers starting together may both record the same change: harmless, and
cheaper than a lock for something that happens at start only."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core import audit
from core.config import SceauConfig
from core.store.db import Database
from core.store.models import AuditEvent

ACTION = "config.loaded"
_SECRET_WORDS = ("pin", "password", "secret", "token_hash")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not any(word in f.name for word in _SECRET_WORDS)
        }
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def effective(config: SceauConfig) -> dict[str, str]:
    """The configuration flattened to "section.key" -> JSON text of its value."""
    flat: dict[str, str] = {}
    for section, values in _plain(config).items():
        if isinstance(values, dict):
            for key, value in values.items():
                flat[f"{section}.{key}"] = json.dumps(value, sort_keys=True)
        else:
            flat[section] = json.dumps(values, sort_keys=True)
    return flat


def record_config(db: Database, config: SceauConfig, *, now: datetime, actor: str) -> bool:
    """Append config.loaded when the configuration differs from the last one recorded;
    True when an event was appended."""
    current = effective(config)
    digest = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()
    with db.write() as session:
        last = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == ACTION)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        ).first()
        previous: dict[str, str] = last.details.get("config", {}) if last else {}
        if last is not None and last.details.get("sha256") == digest:
            return False
        changed = sorted(
            k for k in current.keys() | previous.keys() if current.get(k) != previous.get(k)
        )
        audit.ensure_head(session)
        audit.append(
            session,
            actor=actor,
            action=ACTION,
            at=now,
            details={
                "sha256": digest,
                "changed": changed if last is not None else ["(first recorded)"],
                "config": current,
            },
        )
    return True
