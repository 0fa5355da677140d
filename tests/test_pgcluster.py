"""The throwaway PostgreSQL cluster starts, serves a database and goes away."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tests.support.postgres import PgCluster, find_pg_bin, start_cluster

# Every test here starts a PostgreSQL cluster of its own or needs its binaries.
pytestmark = pytest.mark.postgres


def test_find_pg_bin_finds_initdb_and_pg_ctl() -> None:
    bin_dir = find_pg_bin()
    assert bin_dir is not None, "PostgreSQL is not installed: run scripts/setup.sh"
    assert (bin_dir / "initdb").is_file()
    assert (bin_dir / "pg_ctl").is_file()


@pytest.mark.postgres
def test_cluster_creates_database_and_answers_select_1(tmp_path: Path) -> None:
    cluster: PgCluster = start_cluster(tmp_path)
    try:
        url = cluster.create_database("sceau_test")
        assert url == cluster.url("sceau_test")
        assert url.startswith("postgresql+psycopg://sceau@/sceau_test?host=")
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("select 1")).scalar_one() == 1
                assert conn.execute(sa.text("select current_database()")).scalar_one() == (
                    "sceau_test"
                )
                assert conn.execute(sa.text("show listen_addresses")).scalar_one() == ""
        finally:
            engine.dispose()
    finally:
        cluster.stop()
    assert not cluster.root.exists()
    assert not cluster.datadir.exists()
    cluster.stop()  # idempotent


@pytest.mark.postgres
def test_start_cluster_reaps_the_cluster_of_a_dead_test_run(tmp_path: Path) -> None:
    orphan = start_cluster(tmp_path)
    # As if the test run that started it had been killed: pid above any pid_max.
    (orphan.root / "owner").write_text("999999999 0", encoding="ascii")
    fresh = start_cluster(tmp_path)
    try:
        assert not orphan.root.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                host=str(orphan.socket_dir), port=orphan.port, user="sceau", dbname="postgres"
            )
        fresh.create_database("still_works")
    finally:
        fresh.stop()
        orphan.stop()
