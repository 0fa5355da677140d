"""What an operator already has keeps working: a home made by release 0.1.0 (the layout
before core/, pki/ and audit/) opens with today's code.

tests/data/release-0.1.0/ was made by that release's own code (`sceau init`, a client, a
delegated proof, a certificate on a CSR and one on an HSM key, a revocation, the CRLs, a
timestamp, an audit checkpoint). Its token is not kept (keys and PINs never enter the
repository), so what is checked is everything that needs no key: the schema revision, the
configuration file, every table read through today's models, the certificate status the
OCSP and CRL services read, and the whole audit chain with its signed, timestamped
checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import func, select

from audit.checkpoints import verify_database
from core.config import load_config
from core.store import models
from core.store.db import Database, head_version, migrate, schema_version
from pki.status import CertState, DatabaseStatusSource

RELEASE = Path(__file__).parent / "data" / "release-0.1.0"


def _release_home(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(RELEASE / "sceau.db", home / "sceau.db")
    # The file as that release wrote it, but for the home's path in the database URL.
    written = (RELEASE / "sceau.toml").read_text()
    (home / "sceau.toml").write_text(written.replace("/tmp/relhome", str(home)))
    secrets = home / "secrets.toml"
    # Not the release's PINs (never kept): the token is not opened by these tests.
    secrets.write_text('hsm_user_pin = "0000"\nhsm_so_pin = "0000"\n')
    secrets.chmod(0o600)
    facts: dict[str, str] = json.loads((RELEASE / "release.json").read_text())
    return home, facts


def test_the_release_database_is_at_todays_head_and_migrates(tmp_path: Path) -> None:
    home, _ = _release_home(tmp_path)
    db = Database(load_config(home).database.url)
    assert schema_version(db) == head_version()  # same revisions, nothing to do
    migrate(db)
    assert schema_version(db) == head_version()
    db.dispose()


def test_every_table_reads_through_todays_models(tmp_path: Path) -> None:
    home, facts = _release_home(tmp_path)
    db = Database(load_config(home).database.url)
    with db.read() as session:
        for mapper in models.Base.registry.mappers:
            session.scalars(select(mapper.class_).limit(5)).all()
        issued = session.scalar(
            select(func.count())
            .select_from(models.Certificate)
            .where(models.Certificate.status.in_(["issued", "revoked"]))
        )
        credential = session.scalars(select(models.Credential)).one()
        client = session.scalars(select(models.ApiClient)).one()
    assert issued == 2
    assert credential.status == "active"
    assert credential.key_label == f"subscriber-{credential.id}"  # labels kept
    assert client.name == facts["client"]
    db.dispose()


def test_status_services_read_the_release_records(tmp_path: Path) -> None:
    home, facts = _release_home(tmp_path)
    db = Database(load_config(home).database.url)
    source = DatabaseStatusSource(db)
    revoked = source.status("persons", int(facts["revoked"], 16))
    assert revoked.state is CertState.REVOKED
    assert revoked.reason_code == 1  # keyCompromise
    assert source.status("persons", int(facts["good"], 16)).state is CertState.GOOD
    db.dispose()


def test_the_release_audit_chain_and_checkpoint_verify(tmp_path: Path) -> None:
    home, _ = _release_home(tmp_path)
    db = Database(load_config(home).database.url)
    report = verify_database(db)
    assert report.failure is None, report.failure
    assert report.checkpoints == 1
    db.dispose()
