"""One PKI per database backend per session (SoftHSM2 token, CA keys generated in it, the
same code as `sceau init`); a fresh API client for each test.

Every test that takes ``pki`` runs twice: on SQLite and on a throwaway PostgreSQL cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client as WsgiClient

from core.accounts.clients import create_client
from core.config import SceauConfig
from pki.context import PkiContext
from sceau.devserver import create_app
from sceau.home import init_home
from tests.pgcluster import PgCluster, find_pg_bin, start_cluster

# Fixtures shared by the browser tests (live server, Chromium): registered here so that
# test modules take them by name without importing them.
pytest_plugins = ["tests.browser_fixtures"]

BIN = Path(sys.executable).parent
PUBLIC_URL = "http://pki.example.com"  # a public-suffix host, so pkilint judges for real
DOCUMENTS_URL = "https://pki.example.com"


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


@dataclass
class ApiClient:
    http: WsgiClient
    token: str
    name: str

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.post(
            path,
            data=json.dumps(body),
            headers=headers,
            content_type=kw.pop("content_type", "application/json"),
            **kw,
        )

    def get(self, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.get(path, headers=headers, **kw)


@pytest.fixture(scope="session")
def softhsm_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One token directory for the whole session: a process can use only one (core.hsm.keystore)."""
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir(mode=0o700)
    conf = base / "softhsm2.conf"
    # tests/test_hsm.py makes its tokens here too: a process can load only one conf.
    os.environ["SCEAU_TEST_SOFTHSM_CONF"] = str(conf)
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    return conf


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    if find_pg_bin() is None:
        if os.environ.get("SCEAU_TEST_SKIP_POSTGRES"):
            pytest.skip("PostgreSQL binaries absent and SCEAU_TEST_SKIP_POSTGRES set")
        pytest.fail("PostgreSQL binaries not found: run scripts/setup.sh")
    cluster = start_cluster(tmp_path_factory.mktemp("pg"))
    yield cluster
    cluster.stop()


def make_home(
    base: Path, softhsm_conf: Path, database_url: str | None, label: str
) -> tuple[SceauConfig, list[str]]:
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


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def pki(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path
) -> Iterator[Pki]:
    backend: str = request.param
    home = tmp_path_factory.mktemp(f"home-{backend}")
    url = None
    if backend == "postgresql":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database(f"sceau_{secrets.token_hex(4)}")
    config, _ = make_home(home, softhsm_conf, url, f"test-{backend}")
    ctx = PkiContext.open(config)
    yield Pki(backend, home, config, ctx, create_app(ctx=ctx, start_jobs=False))
    ctx.db.dispose()
