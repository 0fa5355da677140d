"""The test PKI: a home made by the same code as `sceau init` (SoftHSM2 token, CA keys
generated in it), opened once per database backend, and its platform API clients.
tests/conftest.py turns these into fixtures."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client as WsgiClient

from core.accounts.clients import create_client
from core.config import SceauConfig
from pki.context import PkiContext
from sceau.home import init_home
from tests.support.clients import ApiClient

PUBLIC_URL = "http://pki.example.com"  # a public-suffix host, so pkilint judges for real
DOCUMENTS_URL = "https://pki.example.com"

# The parameters of a fixture run on each database backend; PostgreSQL runs carry the
# `postgres` marker, so that `-m "not postgres"` leaves them out.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass
class Pki:
    backend: str
    home: Path
    config: SceauConfig
    ctx: PkiContext
    app: Any

    def client(self, *profiles: str) -> ApiClient:
        name = f"platform-{secrets.token_hex(4)}"
        token = create_client(
            self.ctx.db,
            self.ctx.profiles,
            name,
            list(profiles),
            now=datetime.now(UTC),
            actor="test",
        )
        return ApiClient(WsgiClient(self.app), token, name)


def write_softhsm_conf(base: Path) -> Path:
    """A SoftHSM2 configuration whose tokens live under ``base``/tokens."""
    (base / "tokens").mkdir(mode=0o700)
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    return conf


def make_home(
    base: Path, softhsm_conf: Path, database_url: str | None, label: str
) -> tuple[SceauConfig, list[str]]:
    """`sceau init` in ``base`` on the session's token directory: (config, ceremony lines)."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "softhsm2.conf").write_text(softhsm_conf.read_text())
    config, _steps, ceremony = init_home(
        base,
        base_url=PUBLIC_URL,
        documents_url=DOCUMENTS_URL,
        database_url=database_url,
        token_label=label,
    )
    return config, ceremony


def backend_database(request: pytest.FixtureRequest, backend: str, prefix: str) -> str | None:
    """A fresh database on ``backend`` for a home: None (the home's own SQLite file) or the
    URL of a new database on the session's PostgreSQL cluster."""
    if backend != "postgresql":
        return None
    cluster = request.getfixturevalue("pg_cluster")
    url: str = cluster.create_database(f"{prefix}_{secrets.token_hex(4)}")
    return url


def backend_home(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    softhsm_conf: Path,
    name: str,
) -> SceauConfig:
    """For a fixture parametrised over BACKENDS: a home made by `sceau init`'s code in a
    fresh directory ``name``-``backend``, its token labelled the same, on its own SQLite
    file or on a fresh PostgreSQL database."""
    backend: str = request.param
    home = tmp_path_factory.mktemp(f"{name}-{backend}")
    url = backend_database(request, backend, name.replace("-", "_"))
    config, _ = make_home(home, softhsm_conf, url, f"{name}-{backend}")
    return config
