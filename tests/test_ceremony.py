"""The development key ceremony: keys inside the token, non-extractable; idempotent."""

from __future__ import annotations

import os
from pathlib import Path

from ca.ceremony import ca_key_label
from ca.store.models import Issuer
from tests.conftest import Pki, make_home
from tests.helpers import run


def test_ca_keys_are_sensitive_and_never_extractable(pki: Pki) -> None:
    for issuer in ("root", "persons", "seals"):
        facts = pki.ctx.keys.key_facts(ca_key_label(issuer))
        assert facts.sensitive and facts.never_extractable and facts.always_sensitive
        assert not facts.extractable
    listing = run(
        "pkcs11-tool",
        "--module",
        pki.config.hsm.module,
        "--token-label",
        pki.config.hsm.token_label,
        "--login",
        "--pin",
        pki.config.hsm.user_pin,
        "--list-objects",
        "--type",
        "privkey",
        env_conf=pki.config.hsm.softhsm_conf,
    )
    assert listing.returncode == 0, listing.stderr
    blocks = listing.stdout.split("Private Key Object")[1:]
    labels = {b.split("label:")[1].split("\n")[0].strip(): b for b in blocks}
    for issuer in ("root", "persons", "seals"):
        block = labels[ca_key_label(issuer)]
        assert "sensitive" in block and "never extractable" in block
        assert "extractable" not in block.replace("never extractable", "")


def test_second_init_changes_nothing(pki: Pki, softhsm_conf: Path) -> None:
    with pki.ctx.db.read() as session:
        before = {i.id: i.certificate for i in session.query(Issuer).all()}
    config, ceremony = make_home(
        pki.home, softhsm_conf, pki.config.database.url, pki.config.hsm.token_label
    )
    assert ceremony == []
    with pki.ctx.db.read() as session:
        after = {i.id: i.certificate for i in session.query(Issuer).all()}
    assert after == before and set(after) == {"root", "persons", "seals"}
    secrets_file = pki.home / "secrets.toml"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert config.hsm.user_pin not in (pki.home / "sceau.toml").read_text()
    assert os.stat(pki.home).st_mode & 0o077 == 0
