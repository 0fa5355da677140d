"""The session's fixtures: one PKI per database backend per session (SoftHSM2 token, CA keys
generated in it, the same code as `sceau init`), the throwaway PostgreSQL cluster, and what
the browser tests use. Their machinery lives in tests/support/, which test modules import.

Every test that takes ``pki`` runs twice: on SQLite and (marked ``postgres``) on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from pki.context import PkiContext
from sceau.devserver import create_app
from tests.support.browser import chromium, serving
from tests.support.pki import BACKENDS, Pki, backend_home, write_softhsm_conf
from tests.support.postgres import PgCluster, throwaway_cluster


@pytest.fixture(scope="session")
def softhsm_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One token directory for the whole session: a process can use only one (core.hsm.keystore)."""
    conf = write_softhsm_conf(tmp_path_factory.mktemp("softhsm"))
    # tests/test_hsm.py makes its tokens here too: a process can load only one conf.
    os.environ["SCEAU_TEST_SOFTHSM_CONF"] = str(conf)
    return conf


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    cluster = throwaway_cluster(tmp_path_factory.mktemp("pg"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def pki(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path
) -> Iterator[Pki]:
    config = backend_home(request, tmp_path_factory, softhsm_conf, "test")
    ctx = PkiContext.open(config)
    yield Pki(request.param, config.home, config, ctx, create_app(ctx=ctx, start_jobs=False))
    ctx.db.dispose()


@pytest.fixture
def live(pki: Pki) -> Iterator[str]:
    """The test PKI's application served on a free loopback port: its base URL."""
    with serving(pki.app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched
