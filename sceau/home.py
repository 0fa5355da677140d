"""`sceau init`: the home folder, its configuration and secrets, the development token,
the schema, and the CA key ceremony. Every step keeps what exists."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from core.config import CONFIG_FILE, SECRETS_FILE, SceauConfig, load_config
from core.hsm.keystore import KeyStore
from core.hsm.softhsm import ensure_softhsm_token, find_softhsm_module
from core.store.db import Database, migrate
from pki.profiles import ProfileSet
from sceau.ceremony import run_ceremony
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


def _write_config(
    path: Path,
    home: Path,
    base_url: str,
    documents_url: str,
    database_url: str | None,
    token_label: str,
) -> None:
    if path.exists():
        return
    host = urlsplit(base_url).hostname or ""
    loopback = host in {"127.0.0.1", "localhost", "::1"} or not host.count(".")
    accept = ", ".join(f'"{f}"' for f in LOOPBACK_FINDINGS) if loopback else ""
    path.write_text(f"""\
# Sceau configuration (see README). Secrets live in {SECRETS_FILE} (mode 0600), never here.

[service]
# Public base URL; certificates carry AIA, CRL and OCSP URLs under it.
base_url = "{base_url}"
# https base for the CPS and PKI disclosure statement URLs (defaults to base_url).
documents_url = "{documents_url}"
max_body_bytes = 65536

[database]
# SQLite by default; PostgreSQL: "postgresql+psycopg://user@host/dbname".
url = "{database_url or f"sqlite:///{home / 'sceau.db'}"}"

[hsm]
module = "{find_softhsm_module()}"
token_label = "{token_label}"
# Development SoftHSM2 token under this home; remove for a real HSM.
softhsm_conf = "softhsm2.conf"

[ca]
country = "FR"
organization = "Sceau Development"
organization_identifier = ""
# Arc of your own certificate policy OIDs (e.g. 1.3.6.1.4.1.<your PEN>.1). Empty: the
# certificates carry the ETSI policy OIDs only. (A 2.25.<UUID> arc would need no
# registration, but its 128-bit arc breaks pkilint's decoder and some relying parties.)
policy_arc = ""

[registration]
proof_max_age_days = 90

[tsa]
# Timestamping unit key: ec-p256, ec-p384, rsa-3072 or rsa-4096 (a change gives a new key
# and certificate at the next `sceau init`).
key_algorithm = "ec-p256"
# Policy OID in every token; empty: <[ca] policy_arc>.3.1, or the ETSI BTSP 0.4.0.2023.1.1.
policy_oid = ""
# Accuracy stated in tokens, 1..1000 ms (EN 319 421: 1 s or better).
accuracy_ms = 1000
# "kernel": refuse tokens (timeNotAvailable) unless the kernel says NTP keeps the clock
# within the accuracy. "off": trust the clock blindly, for machines without NTP only.
# `sceau init` writes "off" when the kernel says the clock is not synchronised then.
clock_check = "{"kernel" if kernel_clock_synchronised() else "off"}"
# "batch": answer once the token's record is queued (a crash loses ~100 ms of records);
# "sync": answer once it is committed.
record = "batch"
# "open" (public TSA) or "token" (API clients' bearer tokens, as for the CA API).
auth = "open"
# Tokens per second per client and per worker process, with bursts; 0 = no limit.
rate_limit = 0
rate_burst = 0

[ocsp]
# nextUpdate - thisUpdate of OCSP responses (hours); re-signed when half has passed.
response_validity_hours = 24
# Each worker notices a revocation within this many milliseconds.
revocation_check_ms = 250
# The job pre-signing responses (new certificates, half-expired responses) runs this often.
presign_interval_minutes = 10
max_request_bytes = 8192
max_request_certs = 20
# Answers kept in memory per worker.
cache_entries = 100000

[crl]
# CRL partitions per issuing CA, fixed in each certificate at issuance.
shards = 1
# Every CRL is published again this often (seconds), and at once after a revocation.
publish_interval_seconds = 3600
# nextUpdate of the issuing CAs' CRLs and of the root's (ARL), in hours.
next_update_hours = 24
arl_next_update_hours = 168
# Seconds between two checks for revocations not yet on a CRL.
revocation_check_seconds = 1

[signing]
# How one-time codes reach the owners of qualified credentials: "file" (development: written
# under otp_outbox in this home) or "smtp" (e-mailed to the identity proof's address; set
# smtp_host, smtp_port, smtp_security = "starttls" | "ssl" | "none", smtp_from, smtp_user,
# smtp_ca_file; the password goes in secrets.toml as smtp_password).
otp_channel = "file"
otp_outbox = "otp-outbox"
# One-time codes and SADs (CSC credentials/authorize) work once, within these delays.
otp_ttl_seconds = 300
otp_max_attempts = 3
sad_ttl_seconds = 300
# Keys are destroyed this many days after their certificate was revoked or expired.
key_grace_days = 30
key_cleanup_interval_minutes = 60

[lint]
# pkilint findings accepted instead of refusing issuance (development base URL only).
accept_findings = [{accept}]
""")


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
    _write_config(home / CONFIG_FILE, home, base_url, documents_url, database_url, token_label)
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
        ceremony = run_ceremony(
            config, db, keys, ProfileSet.load(), now=datetime.now(UTC), actor=actor
        )
    finally:
        db.dispose()
    return config, steps, ceremony
