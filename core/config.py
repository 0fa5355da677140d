"""Typed, strict configuration: ``sceau.toml`` plus the 0600 secrets file beside it.

The TOML holds no secret; it names the secrets file. An unknown key is an error that names
it, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.hsm.keystore import HsmConfig

CONFIG_FILE = "sceau.toml"
SECRETS_FILE = "secrets.toml"


def default_home() -> Path:
    return Path(os.environ.get("SCEAU_HOME", ".sceau")).resolve()


@dataclass(frozen=True)
class ServiceConfig:
    # Public base URL of the URL map (design.md). Certificates carry AIA, CRLDP and OCSP URLs
    # under it, so changing it later leaves already issued certificates pointing at the old one.
    base_url: str = "http://127.0.0.1:8000"
    # Base for the CPS and PKI disclosure statement URLs; ETSI EN 319 412-5 wants QcPDS on
    # https, while CRL and OCSP stay on http (a TLS check must not depend on revocation).
    documents_url: str = ""
    # Request bodies above this are refused before they are read (413).
    max_body_bytes: int = 65536

    @property
    def documents_base(self) -> str:
        return (self.documents_url or self.base_url).rstrip("/")


@dataclass(frozen=True)
class DatabaseConfig:
    # SQLAlchemy URL; "sqlite:///<home>/sceau.db" by default, "postgresql+psycopg://..." in
    # production. The schema is created and upgraded by Alembic at `sceau init`.
    url: str = ""


@dataclass(frozen=True)
class HsmSection:
    module: str = ""
    token_label: str = "sceau"  # noqa: S105 - a label, not a secret
    # Set only for the development SoftHSM2 token: its configuration file (tokendir).
    softhsm_conf: str = ""


@dataclass(frozen=True)
class CaConfig:
    # EN 319 412-2 GEN-4.2.3.1: issuer C = country of establishment, O = registered name,
    # organizationIdentifier when a registration number exists.
    country: str = "FR"
    organization: str = "Sceau Development"
    organization_identifier: str = ""
    # Arc under which each profile's own certificate policy OID lives (profile.own_policy is
    # appended); empty means the certificates carry only the ETSI policy OIDs.
    policy_arc: str = ""


@dataclass(frozen=True)
class RegistrationConfig:
    # A verified identity proof may be used to issue for this long after verification
    # (and never past the expiry of the identity document it rests on).
    proof_max_age_days: int = 90
    # EN 319 411-1 OVR-6.4.6-01: records are kept this long after the last certificate that
    # relies on them expires (after their creation when none was issued), then purged.
    retention_years: int = 7
    retention_purge_interval_minutes: int = 60
    # Each uploaded evidence file (JPEG, PNG or PDF, recognised by content).
    max_upload_bytes: int = 10 * 1024 * 1024
    # Officer UI: an idle session ends after this; an account locks after this many wrong
    # passwords or TOTP codes in a row, for this long.
    session_idle_minutes: int = 15
    session_max_hours: int = 10
    max_failed_logins: int = 5
    lockout_minutes: int = 15
    # Webhook callbacks to platforms: retried with this first delay, doubling.
    webhook_retry_seconds: int = 30
    webhook_max_attempts: int = 10


@dataclass(frozen=True)
class TsaConfig:
    # Key algorithm of the timestamping unit, one of the tsu profile's key_algorithms. A
    # change takes effect at the next `sceau init` with a new key and certificate.
    key_algorithm: str = "ec-p256"
    # TSTInfo.policy of every token, and the only reqPolicy accepted (else
    # unacceptedPolicy). Empty: <[ca] policy_arc>.3.1 when the arc is set, else the ETSI
    # best-practices policy 0.4.0.2023.1.1 (EN 319 421 §5.2). Relying parties check tokens
    # against it: change it only together with the TSA disclosure statement.
    policy_oid: str = ""
    # Accuracy stated in every token, in milliseconds, 1..1000 (EN 319 421 TIS-7.7.2-02:
    # 1 s or better). The clock check refuses tokens while the clock's error bound exceeds it.
    accuracy_ms: int = 1000
    # "kernel": trust the clock only while the Linux kernel says NTP keeps it synchronised
    # within the accuracy (EN 319 421 TIS-7.7.1-07), else answer timeNotAvailable. "off": trust
    # the system clock blindly (development machines and CI without NTP; logged at start).
    clock_check: str = "kernel"
    # "batch": answer a token once its record is queued; a crash loses at most ~100 ms of
    # records. "sync": answer only once the record is committed (slower, loses nothing).
    record: str = "batch"
    # "open": anyone may ask (the usual public TSA). "token": only platform API clients
    # (Authorization: Bearer, as for the CA API), whose name is recorded with each token.
    auth: str = "open"
    # Tokens per second allowed to one client (by API client, or by address when open), with
    # bursts of rate_burst; 0 = no limit. Counted in each worker process separately.
    rate_limit: int = 0
    rate_burst: int = 0


@dataclass(frozen=True)
class OcspConfig:
    # nextUpdate - thisUpdate of every response. Relying parties and HTTP caches keep a
    # response this long, so a revocation reaches a client that cached "good" only after
    # it; responses are re-signed when half of it has passed. (CA/B BR 4.9.10, reference
    # only: 8 hours to 10 days.)
    response_validity_hours: int = 24
    # How often each worker re-reads the per-CA revocation counters; the longest a
    # revoked certificate is still answered "good" from a worker's in-memory cache.
    revocation_check_ms: int = 250
    # Pre-signing job period: it signs responses for new certificates and re-signs those
    # past half their validity, so this must stay well under half response_validity_hours.
    presign_interval_minutes: int = 10
    # A DER OCSPRequest is about 100 bytes (a few kB if signed); larger bodies get 413.
    max_request_bytes: int = 8192
    # Certificates in one request (RFC 9919 clients send one); more is answered unauthorized.
    max_request_certs: int = 20
    # Answers each worker keeps in memory (about 1 kB each); emptied when full.
    cache_entries: int = 100_000


@dataclass(frozen=True)
class CrlConfig:
    # Partitions per issuing CA. Each certificate's CRL distribution point names its shard,
    # fixed at issuance, so lowering this later leaves issued certificates pointing at
    # shards that must still be published.
    shards: int = 1
    # Every CRL of every CA is published again this often, revoked or not; a revocation is
    # published at once besides. EN 319 411-1 CSS-6.3.9-05 wants at least one CRL a day,
    # so at most 86400; it must stay below nextUpdate, or CRLs lapse before their successor.
    publish_interval_seconds: int = 3600
    # nextUpdate - thisUpdate of an issuing CA's CRLs: how long a relying party may rely on
    # (and caches keep) one CRL, so how long a revocation can stay unseen by one that does.
    next_update_hours: int = 24
    # The same for the root's CRL (ARL); EN 319 411-1 CSS-6.3.9-13: at most a year.
    arl_next_update_hours: int = 168
    # How often each instance looks for revocations not yet on a CRL (one read of a small
    # table): a revoked certificate reaches its CRL within about this delay.
    revocation_check_seconds: int = 1


OTP_CHANNELS = ("file", "smtp")
SMTP_SECURITY = ("starttls", "ssl", "none")


@dataclass(frozen=True)
class SigningConfig:
    # How one-time codes reach the owner of a qualified (SCAL2) credential. "file": each code
    # is written to <home>/<otp_outbox>/<credential id>.otp (mode 0600), for development and
    # tests only. "smtp": e-mailed to the address of the owner's identity proof; a qualified
    # credential is then issued only to a subject with an e-mail address.
    otp_channel: str = "file"
    otp_outbox: str = "otp-outbox"
    # The "smtp" channel. "starttls" (port 587) or "ssl" (implicit TLS, port 465) check the
    # server's certificate against smtp_ca_file, or the system's trust store when empty;
    # "none" sends in clear (a relay on localhost only). With smtp_user set, the password is
    # smtp_password in secrets.toml, never here.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_from: str = ""
    smtp_user: str = ""
    smtp_ca_file: str = ""
    smtp_timeout_seconds: int = 10
    # A one-time code works once, within this delay, and dies after this many wrong tries.
    otp_ttl_seconds: int = 300
    otp_max_attempts: int = 3
    # A SAD (CSC credentials/authorize) works once, within this delay.
    sad_ttl_seconds: int = 300
    # A subscriber key is destroyed this long after its certificate was revoked or expired
    # (it signs nothing from that moment on); keys of failed issuances go at the next run.
    key_grace_days: int = 30
    key_cleanup_interval_minutes: int = 60

    def __post_init__(self) -> None:
        where = f"{CONFIG_FILE}: [signing]"
        if self.otp_channel not in OTP_CHANNELS:
            raise ConfigError(f"{where} otp_channel must be one of {', '.join(OTP_CHANNELS)}")
        if self.smtp_security not in SMTP_SECURITY:
            raise ConfigError(f"{where} smtp_security must be one of {', '.join(SMTP_SECURITY)}")
        if self.otp_channel == "smtp" and not (self.smtp_host and self.smtp_from):
            raise ConfigError(f'{where} otp_channel = "smtp" needs smtp_host and smtp_from')

    @property
    def otp_address(self) -> str | None:
        """The identity-proof subject field the OTP channel sends to (None: no address
        needed). Issuance refuses a qualified credential whose subject lacks it."""
        return "email" if self.otp_channel == "smtp" else None


@dataclass(frozen=True)
class AuditConfig:
    # A checkpoint (Merkle root of the audit log signed with the audit key in the token and
    # timestamped by our TSA) is made every this many events, checked every minute...
    checkpoint_every_events: int = 1000
    # ...and at least this often when any event was appended since the last one. Events
    # after the newest checkpoint can be removed without a trace but by the chain head row:
    # this bounds how long that window stays open.
    checkpoint_interval_minutes: int = 60
    # The token key that signs checkpoints (EC P-256, generated by the key ceremony).
    key_label: str = "sceau-audit"


@dataclass(frozen=True)
class LintConfig:
    # pkilint finding codes accepted instead of refusing issuance. Only for development:
    # `sceau init` lists the ones a loopback base URL provokes (etsi.internal_domain_name...).
    accept_findings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SceauConfig:
    home: Path
    service: ServiceConfig
    database: DatabaseConfig
    hsm: HsmConfig
    ca: CaConfig
    registration: RegistrationConfig
    lint: LintConfig
    tsa: TsaConfig = TsaConfig()
    ocsp: OcspConfig = OcspConfig()
    crl: CrlConfig = CrlConfig()
    signing: SigningConfig = SigningConfig()
    audit: AuditConfig = AuditConfig()
    so_pin: str = field(default="", repr=False)


def _section(cls: type[Any], raw: dict[str, Any], name: str) -> Any:
    data = raw.get(name, {})
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_FILE}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{CONFIG_FILE}: unknown key {key!r} in [{name}]")
    values: dict[str, Any] = {}
    for key, raw_value in data.items():
        default = known[key].default
        value = raw_value
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{CONFIG_FILE}: [{name}] {key} must be a list of strings")
            value = tuple(value)
        elif not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(
            default, bool
        ):
            raise ConfigError(f"{CONFIG_FILE}: [{name}] {key} must be a {type(default).__name__}")
        values[key] = value
    return cls(**values)


def read_secrets(path: Path) -> dict[str, str]:
    """Read the secrets file, refusing one that others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise ConfigError(f"secrets file {path} is missing (run `sceau init`)") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"secrets file {path} must be mode 0600 (chmod 600 {path})")
    data = tomllib.loads(path.read_text())
    return {k: str(v) for k, v in data.items()}


def load_config(home: Path | None = None) -> SceauConfig:
    home = (home or default_home()).resolve()
    path = home / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} not found: run `sceau init --home {home}` first") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for name in raw:
        if name not in {
            "service",
            "database",
            "hsm",
            "ca",
            "registration",
            "lint",
            "tsa",
            "ocsp",
            "crl",
            "signing",
            "audit",
        }:
            raise ConfigError(f"{CONFIG_FILE}: unknown section [{name}]")
    hsm_section: HsmSection = _section(HsmSection, raw, "hsm")
    secrets = read_secrets(home / SECRETS_FILE)
    if "hsm_user_pin" not in secrets:
        raise ConfigError(f"{home / SECRETS_FILE}: hsm_user_pin is missing")
    if not hsm_section.module:
        raise ConfigError(f"{CONFIG_FILE}: [hsm] module is required")
    database: DatabaseConfig = _section(DatabaseConfig, raw, "database")
    if not database.url:
        raise ConfigError(f"{CONFIG_FILE}: [database] url is required")
    return SceauConfig(
        home=home,
        service=_section(ServiceConfig, raw, "service"),
        database=database,
        hsm=HsmConfig(
            module=Path(hsm_section.module),
            token_label=hsm_section.token_label,
            user_pin=secrets["hsm_user_pin"],
            softhsm_conf=(home / hsm_section.softhsm_conf) if hsm_section.softhsm_conf else None,
        ),
        ca=_section(CaConfig, raw, "ca"),
        registration=_section(RegistrationConfig, raw, "registration"),
        lint=_section(LintConfig, raw, "lint"),
        tsa=_section(TsaConfig, raw, "tsa"),
        ocsp=_section(OcspConfig, raw, "ocsp"),
        crl=_section(CrlConfig, raw, "crl"),
        signing=_section(SigningConfig, raw, "signing"),
        audit=_section(AuditConfig, raw, "audit"),
        so_pin=secrets.get("hsm_so_pin", ""),
    )
