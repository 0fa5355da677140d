"""`sceau init`: the home folder, its configuration and secrets, the development token,
the schema, and the CA key ceremony. Every step keeps what exists."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from core.config import CONFIG_FILE, SECRETS_FILE, SceauConfig, config_toml, load_config
from core.hsm.keystore import KeyStore
from core.hsm.softhsm import CONF_NAME, ensure_softhsm_token, find_softhsm_module
from core.store.db import Database, migrate
from pki.profiles import ProfileSet
from sceau.ceremony import Ceremony
from tsa.clock import kernel_clock_synchronised

# pkilint rightly refuses certificate URLs on a loopback or non-public host
# (etsi.internal_domain_name) and QcPDS URLs that are not https; a development home
# serving on 127.0.0.1 accepts exactly these findings and nothing else.
LOOPBACK_FINDINGS = (
    "etsi.internal_domain_name",
    "etsi.en_319_412_5.gen-4.3.4.url_scheme_not_https",
)


def _write_secrets(path: Path) -> None:
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# Sceau secrets: never commit, never copy into sceau.toml or a log.\n")
        out.write(f'hsm_user_pin = "{secrets.token_hex(16)}"\n')
        out.write(f'hsm_so_pin = "{secrets.token_hex(16)}"\n')


@dataclass(frozen=True)
class HomeChoices:
    """What `sceau init` decides for a new sceau.toml; every other setting is written with
    its default from core.config."""

    home: Path
    base_url: str
    documents_url: str
    database_url: str | None
    token_label: str

    @property
    def loopback(self) -> bool:
        host = urlsplit(self.base_url).hostname or ""
        return host in {"127.0.0.1", "localhost", "::1"} or not host.count(".")

    def settings(self) -> dict[str, dict[str, object]]:
        """The chosen values, by section."""
        return {
            "service": {"base_url": self.base_url, "documents_url": self.documents_url},
            "database": {"url": self.database_url or f"sqlite:///{self.home / 'sceau.db'}"},
            "hsm": {
                "module": str(find_softhsm_module()),
                "token_label": self.token_label,
                # The development SoftHSM2 token under this home (core.hsm.softhsm).
                "softhsm_conf": CONF_NAME,
            },
            # Kernel clock check where the kernel says NTP keeps the clock; else off.
            "tsa": {"clock_check": "kernel" if kernel_clock_synchronised() else "off"},
            "lint": {"accept_findings": list(LOOPBACK_FINDINGS) if self.loopback else []},
        }


HEADER = (
    f"Sceau configuration, written by `sceau init` from the defaults and explanations of"
    f" core/config.py; a key left out takes its default. Secrets live in {SECRETS_FILE}"
    f" (mode 0600), never here."
)


def _write_config(path: Path, choices: HomeChoices) -> None:
    if path.exists():
        return
    path.write_text(config_toml(choices.settings(), header=HEADER))


def init_home(
    home: Path,
    *,
    base_url: str = "http://127.0.0.1:8000",
    documents_url: str = "",
    database_url: str | None = None,
    token_label: str = "sceau",  # noqa: S107 - a label, not a secret
) -> tuple[SceauConfig, list[str], list[str]]:
    """Create or complete a home. Options only shape a new sceau.toml; an existing one wins."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_secrets(home / SECRETS_FILE)
    choices = HomeChoices(home, base_url, documents_url, database_url, token_label)
    _write_config(home / CONFIG_FILE, choices)
    config = load_config(home)
    steps: list[str] = []
    ceremony: list[str] = []
    if config.hsm.softhsm_conf is not None:
        ensure_softhsm_token(home, config.hsm.token_label, config.hsm.user_pin, config.so_pin)
        steps.append(f"SoftHSM2 token {config.hsm.token_label!r} under {home / 'tokens'}")
    db = Database(config.database.url)
    try:
        migrate(db)
        steps.append("database schema up to date")
        keys = KeyStore(config.hsm)
        actor = f"operator:{os.environ.get('USER', 'unknown')}"
        ceremony = Ceremony(config, db, keys, ProfileSet.load(), datetime.now(UTC), actor).run()
    finally:
        db.dispose()
    return config, steps, ceremony
