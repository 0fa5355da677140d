"""The `sceau` command line, run as a user runs it (a separate process)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.judges import BIN, run


def sceau(home: Path, *args: str) -> tuple[int, str, str]:
    done = run(BIN / "sceau", "--home", home, *args)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow  # `sceau` processes, a key ceremony among them
def test_init_client_and_audit_verify(tmp_path: Path, softhsm_conf: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "softhsm2.conf").write_text(softhsm_conf.read_text())
    code, out, err = sceau(home, "init", "--token-label", "cli-test")
    assert code == 0, err
    assert "certificate for root" in out and "certificate for persons" in out
    code, out, _ = sceau(home, "init")
    assert code == 0 and "nothing changed" in out

    code, out, _ = sceau(
        home, "client", "add", "acme-sign", "--profile", "person-lcp", "--profile", "seal-lcp"
    )
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert token.startswith("sceau_") and len(token) > 40
    # Only its hash is stored.
    db = sqlite3.connect(home / "sceau.db")
    assert token not in str(db.execute("select * from api_clients").fetchall())
    code, _, err = sceau(home, "client", "add", "acme-sign", "--profile", "person-lcp")
    assert code == 2 and "exists already" in err
    code, _, err = sceau(home, "client", "add", "other", "--profile", "no-such-profile")
    assert code == 2 and "unknown profile" in err

    code, out, _ = sceau(home, "audit", "verify")
    assert code == 0 and "intact" in out
    db.execute("update audit_events set actor = 'mallory' where seq = 2")
    db.commit()
    code, out, _ = sceau(home, "audit", "verify")
    assert code == 1 and "event 2" in out
    # No secret reached the configuration file or the output.
    pin = (home / "secrets.toml").read_text().split('hsm_user_pin = "')[1].split('"')[0]
    assert pin not in (home / "sceau.toml").read_text()


def test_missing_home_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = sceau(tmp_path / "nowhere", "client", "add", "x", "--profile", "person-lcp")
    assert code == 2 and "sceau init" in err
