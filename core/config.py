"""Typed, strict configuration: ``sceau.toml`` plus the 0600 secrets file beside it.

Each ``[section]`` is a frozen dataclass that checks itself when it is built (ranges and
choices declared with each field by ``setting``, the rules between fields in ``check``), so
``load_config`` refuses a bad file once, for every service. The same dataclasses write the
file (``config_toml``, used by ``sceau init``): a default and its explanation live here only.

The TOML holds no secret; it names the secrets file. An unknown key is an error that names
it, so a typo never silently falls back to a default; a missing key takes its default, so a
file written by an earlier release keeps loading.
"""

from __future__ import annotations

import math
import os
import re
import stat
import textwrap
import tomllib
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from core.errors import ConfigError
from core.hsm.keystore import HsmConfig

CONFIG_FILE = "sceau.toml"
SECRETS_FILE = "secrets.toml"

T = TypeVar("T")


def default_home() -> Path:
    return Path(os.environ.get("SCEAU_HOME", ".sceau")).resolve()


# -- declaring a setting ---------------------------------------------------------------------

_META = "sceau"


@dataclass(frozen=True)
class _Rule:
    """What ``setting`` records in a field's metadata."""

    doc: str
    low: int | None
    high: int | None
    choices: tuple[str, ...]
    required: bool

    def allowed(self) -> str:
        """The range or choices, as the error message and the file's comment say them."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            return f"between {self.low} and {self.high}"
        if self.low is not None:
            return f"at least {self.low}"
        if self.high is not None:
            return f"at most {self.high}"
        return ""

    def outside(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        )


def setting(
    default: T,
    doc: str,
    *,
    low: int | None = None,
    high: int | None = None,
    choices: tuple[str, ...] = (),
) -> T:
    """A field of a ``[section]``: its default, why it exists (written above it in
    sceau.toml), and the range or choices that building the section checks."""
    return field(default=default, metadata={_META: _Rule(doc, low, high, choices, False)})


def required(doc: str, default: str = "") -> str:
    """A text field that may not be empty (without a default: the file must set it,
    and ``sceau init`` writes it)."""
    return field(default=default, metadata={_META: _Rule(doc, None, None, (), True)})


def _rule(f: Field[Any]) -> _Rule:
    rule = f.metadata.get(_META)
    return rule if isinstance(rule, _Rule) else _Rule("", None, None, (), False)


@dataclass(frozen=True)
class Section:
    """A ``[section]`` of sceau.toml; ``TABLE`` is its name there."""

    TABLE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            self._check_rule(f.name, _rule(f), getattr(self, f.name))
        self.check()

    def check(self) -> None:
        """Rules between fields (each field's own range is declared with it)."""

    def refuse(self, message: str) -> ConfigError:
        return ConfigError(f"{CONFIG_FILE}: [{self.TABLE}] {message}")

    def _check_rule(self, name: str, rule: _Rule, value: object) -> None:
        if rule.required and value in ("", ()):
            raise self.refuse(f"{name} is required")
        if rule.choices and value not in rule.choices:
            raise self.refuse(f"{name} must be {rule.allowed()}, not {value!r}")
        if rule.outside(value):
            raise self.refuse(f"{name} must be {rule.allowed()}, not {value}")


_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")


def _is_oid(text: str) -> bool:
    return _OID.fullmatch(text) is not None


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


# -- the sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceConfig(Section):
    """The public face of every service."""

    TABLE = "service"

    base_url: str = setting(
        "http://127.0.0.1:8000",
        "Public base URL of the URL map (design.md). Certificates carry AIA, CRL and OCSP"
        " URLs under it, so changing it later leaves issued certificates pointing at the"
        " old one.",
    )
    documents_url: str = setting(
        "",
        "https base for the CPS and PKI disclosure statement URLs (empty: base_url). ETSI"
        " EN 319 412-5 wants QcPDS on https, while CRL and OCSP stay on http (a TLS check"
        " must not depend on revocation).",
    )
    max_body_bytes: int = setting(
        65536, "Request bodies above this are refused before they are read (413).", low=1024
    )
    auth_failures_per_minute: int = setting(
        60,
        "Failed API-token attempts allowed per client address and minute, in each worker"
        " process; past it, that address gets 429 with Retry-After.",
        low=1,
    )

    def check(self) -> None:
        if not _is_http_url(self.base_url):
            raise self.refuse(f"base_url must be an http:// or https:// URL, not {self.base_url!r}")
        if self.documents_url and not _is_http_url(self.documents_url):
            raise self.refuse(
                f"documents_url must be empty or an http(s):// URL, not {self.documents_url!r}"
            )

    @property
    def documents_base(self) -> str:
        return (self.documents_url or self.base_url).rstrip("/")


@dataclass(frozen=True)
class DatabaseConfig(Section):
    """Where every record lives; the schema is created and upgraded by Alembic at
    `sceau init`."""

    TABLE = "database"

    url: str = required(
        'SQLAlchemy URL: "sqlite:///<home>/sceau.db" for one machine,'
        ' "postgresql+psycopg://user@host/dbname" in production (deploy/postgresql).'
    )


# PKCS#11 CK_TOKEN_INFO.label is 32 bytes, blank-padded.
TOKEN_LABEL_MAX_BYTES = 32


@dataclass(frozen=True)
class HsmSection(Section):
    """The PKCS#11 token that holds every key; its PINs are in secrets.toml."""

    TABLE = "hsm"

    module: str = required("The PKCS#11 library (.so) of the HSM.")
    token_label: str = required("Label of the token that holds the keys.", "sceau")
    softhsm_conf: str = setting(
        "",
        "Development SoftHSM2 token only: its configuration file (tokendir), relative to the"
        " home. Empty for a real HSM.",
    )

    def check(self) -> None:
        if len(self.token_label.encode()) > TOKEN_LABEL_MAX_BYTES:
            raise self.refuse(f"token_label must have at most {TOKEN_LABEL_MAX_BYTES} bytes")


@dataclass(frozen=True)
class CaConfig(Section):
    """The CAs' names (EN 319 412-2 GEN-4.2.3.1: issuer C = country of establishment,
    O = registered name, organizationIdentifier when a registration number exists) and
    policy OIDs."""

    TABLE = "ca"

    country: str = setting("FR", "Country of establishment, ISO 3166 alpha-2.")
    organization: str = setting("Sceau Development", "Registered name of the CA operator.")
    organization_identifier: str = setting(
        "", "EN 319 412-1 organizationIdentifier (e.g. NTRFR-<SIREN>); empty when none."
    )
    policy_arc: str = setting(
        "",
        "Arc of your own certificate policy OIDs (e.g. 1.3.6.1.4.1.<your PEN>.1); each"
        " profile's own policy is appended to it. Empty: the certificates carry the ETSI"
        " policy OIDs only. (A 2.25.<UUID> arc would need no registration, but its 128-bit"
        " arc breaks pkilint's decoder and some relying parties.)",
    )

    def check(self) -> None:
        if not re.fullmatch(r"[A-Z]{2}", self.country):
            raise self.refuse(
                f"country must be two capital letters (ISO 3166), not {self.country!r}"
            )
        if self.policy_arc and not _is_oid(self.policy_arc):
            raise self.refuse(f"policy_arc {self.policy_arc!r} is not an object identifier")


@dataclass(frozen=True)
class RegistrationConfig(Section):
    """The registration authority: identity proofs, their records, the officer UI, the
    platforms' webhooks."""

    TABLE = "registration"

    proof_max_age_days: int = setting(
        90,
        "A verified identity proof may be used to issue for this long after verification"
        " (and never past the expiry of the identity document it rests on).",
        low=1,
    )
    retention_years: int = setting(
        7,
        "EN 319 411-1 OVR-6.4.6-01: records are kept this long after the last certificate"
        " that relies on them expires (after their creation when none was issued), then"
        " purged. The policies state it.",
        low=1,
    )
    retention_purge_interval_minutes: int = setting(
        60, "How often the purge job looks for records past retention.", low=1
    )
    max_upload_bytes: int = setting(
        10 * 1024 * 1024,
        "Largest evidence file (JPEG, PNG or PDF, recognised by content).",
        low=1024,
    )
    session_idle_minutes: int = setting(15, "Officer UI: an idle session ends after this.", low=1)
    session_max_hours: int = setting(10, "Officer UI: any session ends after this.", low=1)
    max_failed_logins: int = setting(
        5, "An account locks after this many wrong passwords or TOTP codes in a row...", low=1
    )
    lockout_minutes: int = setting(15, "...for this long.", low=1)
    webhook_retry_seconds: int = setting(
        30, "Webhook callbacks to platforms are retried with this first delay, doubling...", low=1
    )
    webhook_max_attempts: int = setting(10, "...at most this many times in all.", low=1)


# EN 319 421 TIS-7.7.2-02: an accuracy of 1 s or better.
MAX_ACCURACY_MS = 1000


@dataclass(frozen=True)
class TsaConfig(Section):
    """The RFC 3161 timestamping authority (EN 319 421)."""

    TABLE = "tsa"

    key_algorithm: str = setting(
        "ec-p256",
        "Key algorithm of the timestamping unit, one of the tsu profile's key_algorithms"
        " (ec-p256, ec-p384, rsa-3072, rsa-4096). A change takes effect at the next"
        " `sceau init`, with a new key and certificate.",
    )
    policy_oid: str = setting(
        "",
        "TSTInfo.policy of every token, and the only reqPolicy accepted (else"
        " unacceptedPolicy). Empty: <[ca] policy_arc>.3.1 when the arc is set, else the ETSI"
        " best-practices policy 0.4.0.2023.1.1 (EN 319 421 §5.2). Relying parties check"
        " tokens against it: change it only together with the TSA disclosure statement.",
    )
    accuracy_ms: int = setting(
        1000,
        "Accuracy stated in every token, in milliseconds (EN 319 421 TIS-7.7.2-02: 1 s or"
        " better). The clock check refuses tokens while the clock's error bound exceeds it.",
        low=1,
        high=MAX_ACCURACY_MS,
    )
    clock_check: str = setting(
        "kernel",
        '"kernel": trust the clock only while the Linux kernel says NTP keeps it'
        " synchronised within the accuracy (EN 319 421 TIS-7.7.1-07), else answer"
        ' timeNotAvailable. "off": trust the system clock blindly (machines without NTP'
        ' only; logged at start). `sceau init` writes "off" when the clock is not'
        " synchronised then.",
        choices=("kernel", "off"),
    )
    record: str = setting(
        "batch",
        '"batch": answer a token once its record is queued; a crash loses at most ~100 ms'
        ' of records. "sync": answer only once the record is committed (slower, loses'
        " nothing).",
        choices=("batch", "sync"),
    )
    auth: str = setting(
        "open",
        '"open": anyone may ask (the usual public TSA). "token": only platform API clients'
        " (Authorization: Bearer, as for the CA API), whose name is recorded with each"
        " token.",
        choices=("open", "token"),
    )
    rate_limit: int = setting(
        0,
        "Tokens per second allowed to one client (by API client, or by address when open);"
        " 0 = no limit. Counted in each worker process separately.",
        low=0,
    )
    rate_burst: int = setting(0, "Bursts allowed above rate_limit (0: rate_limit).", low=0)

    def check(self) -> None:
        if self.policy_oid and not _is_oid(self.policy_oid):
            raise self.refuse(f"policy_oid {self.policy_oid!r} is not an object identifier")


@dataclass(frozen=True)
class OcspConfig(Section):
    """The OCSP responder (RFC 6960, RFC 9919): response lifetimes, caching, limits."""

    TABLE = "ocsp"

    response_validity_hours: int = setting(
        24,
        "nextUpdate - thisUpdate of every response. Relying parties and HTTP caches keep a"
        ' response this long, so a revocation reaches a client that cached "good" only after'
        " it; responses are re-signed when half of it has passed. (CA/B BR 4.9.10, for"
        " reference only: 8 hours to 10 days.)",
        low=1,
    )
    revocation_check_ms: int = setting(
        250,
        "How often each worker re-reads the per-CA revocation counters: the longest a"
        ' revoked certificate is still answered "good" from a worker\'s in-memory cache.'
        " At most a second (issue 5); 0 would poll at every request.",
        low=1,
        high=1000,
    )
    presign_interval_minutes: int = setting(
        10,
        "Period of the pre-signing job, which signs responses for new certificates and"
        " re-signs those past half their validity: it must stay under half of"
        " response_validity_hours.",
        low=1,
    )
    max_request_bytes: int = setting(
        8192,
        "A DER OCSPRequest is about 100 bytes (a few kB if signed); larger bodies get 413.",
        low=64,
    )
    max_request_certs: int = setting(
        20,
        "Certificates in one request (RFC 9919 clients send one); more is answered unauthorized.",
        low=1,
    )
    cache_entries: int = setting(
        100_000, "Answers each worker keeps in memory (about 1 kB each); emptied when full.", low=1
    )

    def check(self) -> None:
        if not self.presign_interval_minutes * 60 < self.response_validity_hours * 1800:
            raise self.refuse(
                "presign_interval_minutes must be positive and under half of"
                " response_validity_hours, or responses would go stale before being re-signed"
            )


_DAY_SECONDS = 86_400
_YEAR_HOURS = 366 * 24
_MAX_SHARDS = 4096


@dataclass(frozen=True)
class CrlConfig(Section):
    """CRL publication: partitions, schedule and nextUpdate (EN 319 411-1 CSS-6.3.9)."""

    TABLE = "crl"

    shards: int = setting(
        1,
        "Partitions per issuing CA. Each certificate's CRL distribution point names its"
        " shard, fixed at issuance, so lowering this later leaves issued certificates"
        " pointing at shards that must still be published.",
        low=1,
        high=_MAX_SHARDS,
    )
    publish_interval_seconds: int = setting(
        3600,
        "Every CRL of every CA is published again this often, revoked or not; a revocation"
        " is published at once besides. EN 319 411-1 CSS-6.3.9-05 wants at least one CRL a"
        " day; it must stay below nextUpdate, or CRLs lapse before their successor.",
        low=1,
        high=_DAY_SECONDS,
    )
    next_update_hours: int = setting(
        24,
        "nextUpdate - thisUpdate of an issuing CA's CRLs: how long a relying party may rely"
        " on (and caches keep) one CRL, so how long a revocation can stay unseen by one"
        " that does.",
        low=1,
    )
    arl_next_update_hours: int = setting(
        168,
        "The same for the root's CRL (ARL); EN 319 411-1 CSS-6.3.9-13: at most a year.",
        low=1,
        high=_YEAR_HOURS,
    )
    revocation_check_seconds: int = setting(
        1,
        "How often each instance looks for revocations not yet on a CRL (one read of a"
        " small table): a revoked certificate reaches its CRL within about this delay.",
        low=1,
    )

    def check(self) -> None:
        # RFC 5280 section 5.1.2.5: the next CRL is issued before nextUpdate.
        for key, hours in (
            ("next_update_hours", self.next_update_hours),
            ("arl_next_update_hours", self.arl_next_update_hours),
        ):
            if hours * 3600 <= self.publish_interval_seconds:
                raise self.refuse(
                    f"{key} ({hours} h) must exceed publish_interval_seconds"
                    f" ({self.publish_interval_seconds} s), or CRLs lapse before the next one"
                )


OTP_CHANNELS = ("file", "smtp")
SMTP_SECURITY = ("starttls", "ssl", "none")


@dataclass(frozen=True)
class SigningConfig(Section):
    """Remote signing (CSC API v2): one-time codes, SADs, subscriber key lifetime."""

    TABLE = "signing"

    otp_channel: str = setting(
        "file",
        'How one-time codes reach the owner of a qualified (SCAL2) credential. "file": each'
        " code is written to <home>/<otp_outbox>/<credential id>.otp (mode 0600), for"
        ' development and tests only. "smtp": e-mailed to the address of the owner\'s'
        " identity proof; a qualified credential is then issued only to a subject with an"
        " e-mail address.",
        choices=OTP_CHANNELS,
    )
    otp_outbox: str = setting("otp-outbox", 'The "file" channel\'s folder, in the home.')
    smtp_host: str = setting("", 'The "smtp" channel\'s server.')
    smtp_port: int = setting(587, "Its port (587 for starttls, 465 for ssl).", low=1, high=65535)
    smtp_security: str = setting(
        "starttls",
        '"starttls" or "ssl" (implicit TLS) check the server\'s certificate against'
        ' smtp_ca_file, or the system\'s trust store when empty; "none" sends in clear (a'
        " relay on localhost only).",
        choices=SMTP_SECURITY,
    )
    smtp_from: str = setting("", "Sender address of the e-mails.")
    smtp_user: str = setting(
        "", "Login, if the server wants one; the password is smtp_password in secrets.toml."
    )
    smtp_ca_file: str = setting("", "CA certificates (PEM) that the server's must chain to.")
    smtp_timeout_seconds: int = setting(10, "Connection and command timeout.", low=1)
    otp_ttl_seconds: int = setting(
        300,
        "A one-time code works once, within this delay, and dies after otp_max_attempts"
        " wrong tries.",
        low=1,
    )
    otp_max_attempts: int = setting(3, "Wrong tries that kill a one-time code.", low=1)
    sad_ttl_seconds: int = setting(
        300, "A SAD (CSC credentials/authorize) works once, within this delay.", low=1
    )
    key_grace_days: int = setting(
        30,
        "A subscriber key is destroyed this long after its certificate was revoked or"
        " expired (it signs nothing from that moment on); keys of failed issuances go at"
        " the next run.",
        low=0,
    )
    key_cleanup_interval_minutes: int = setting(60, "How often the key clean-up job runs.", low=1)

    def check(self) -> None:
        if self.otp_channel == "smtp" and not (self.smtp_host and self.smtp_from):
            raise self.refuse('otp_channel = "smtp" needs smtp_host and smtp_from')

    @property
    def otp_address(self) -> str | None:
        """The identity-proof subject field the OTP channel sends to (None: no address
        needed). Issuance refuses a qualified credential whose subject lacks it."""
        return "email" if self.otp_channel == "smtp" else None


@dataclass(frozen=True)
class AuditConfig(Section):
    """Audit checkpoints: Merkle roots of the audit log signed with the audit key in the
    token and timestamped by our TSA."""

    TABLE = "audit"

    checkpoint_every_events: int = setting(
        1000, "A checkpoint is made every this many events (checked every minute)...", low=1
    )
    checkpoint_interval_minutes: int = setting(
        60,
        "...and at least this often when any event was appended since the last one. Events"
        " after the newest checkpoint can be removed without a trace but by the chain head"
        " row: this bounds how long that window stays open.",
        low=1,
    )
    key_label: str = required(
        "The token key that signs checkpoints (EC P-256, made by the key ceremony).",
        "sceau-audit",
    )


@dataclass(frozen=True)
class LintConfig(Section):
    """Pre-issuance linting (pkilint and Sceau's own rules)."""

    TABLE = "lint"

    accept_findings: tuple[str, ...] = setting(
        (),
        "pkilint finding codes accepted instead of refusing issuance. Only for development:"
        " `sceau init` lists the ones a loopback base URL provokes"
        " (etsi.internal_domain_name...).",
    )


# The sections of sceau.toml, in the order the file states them.
SECTIONS: tuple[type[Section], ...] = (
    ServiceConfig,
    DatabaseConfig,
    HsmSection,
    CaConfig,
    RegistrationConfig,
    TsaConfig,
    OcspConfig,
    CrlConfig,
    SigningConfig,
    AuditConfig,
    LintConfig,
)


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


# -- reading ---------------------------------------------------------------------------------

S = TypeVar("S", bound=Section)


def _value(cls: type[Section], f: Field[Any], value: object) -> object:
    """``value`` as field ``f`` holds it; TOML's types checked against the default's."""
    default = f.default
    where = f"{CONFIG_FILE}: [{cls.TABLE}] {f.name}"
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings")
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
        raise ConfigError(f"{where} must be a {type(default).__name__}")
    return value


def _section(cls: type[S], raw: Mapping[str, Any]) -> S:
    data = raw.get(cls.TABLE, {})
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_FILE}: [{cls.TABLE}] must be a table")
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{CONFIG_FILE}: unknown key {key!r} in [{cls.TABLE}]")
    return cls(**{key: _value(cls, known[key], value) for key, value in data.items()})


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
    tables = {cls.TABLE for cls in SECTIONS}
    for name in raw:
        if name not in tables:
            raise ConfigError(f"{CONFIG_FILE}: unknown section [{name}]")
    hsm = _section(HsmSection, raw)
    secrets = read_secrets(home / SECRETS_FILE)
    if "hsm_user_pin" not in secrets:
        raise ConfigError(f"{home / SECRETS_FILE}: hsm_user_pin is missing")
    return SceauConfig(
        home=home,
        service=_section(ServiceConfig, raw),
        database=_section(DatabaseConfig, raw),
        hsm=HsmConfig(
            module=Path(hsm.module),
            token_label=hsm.token_label,
            user_pin=secrets["hsm_user_pin"],
            softhsm_conf=(home / hsm.softhsm_conf) if hsm.softhsm_conf else None,
        ),
        ca=_section(CaConfig, raw),
        registration=_section(RegistrationConfig, raw),
        lint=_section(LintConfig, raw),
        tsa=_section(TsaConfig, raw),
        ocsp=_section(OcspConfig, raw),
        crl=_section(CrlConfig, raw),
        signing=_section(SigningConfig, raw),
        audit=_section(AuditConfig, raw),
        so_pin=secrets.get("hsm_so_pin", ""),
    )


# -- writing ---------------------------------------------------------------------------------

_WIDTH = 92
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# TOML's short escapes; the other control characters are written \uXXXX.
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:  # the C0 controls and DEL
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    """The TOML spelling of the types a section holds: str, bool, int, float, and
    lists (or tuples) of those."""
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {type(value).__name__}")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_comment(text: str) -> list[str]:
    """``text`` (a docstring's line breaks and indents folded) as ``#`` lines."""
    return textwrap.wrap(
        " ".join(text.split()), _WIDTH, initial_indent="# ", subsequent_indent="# "
    )


def toml_table(path: tuple[str, ...], doc: str, items: Mapping[str, tuple[str, object]]) -> str:
    """``[path]`` preceded by ``doc``; each item is key -> (its comment, its value). A
    mapping value is written as a nested table ``[path.key]`` after the plain keys."""
    lines = [*toml_comment(doc), "[" + ".".join(map(toml_key, path)) + "]"]
    nested = []
    for key, (comment, value) in items.items():
        if isinstance(value, Mapping):
            plain = {k: ("", v) for k, v in value.items()}
            nested.append(toml_table((*path, key), comment, plain))
            continue
        lines += [*toml_comment(comment), f"{toml_key(key)} = {toml_value(value)}"]
    return "\n".join([*lines, *("\n" + table.rstrip("\n") for table in nested)]) + "\n"


def config_toml(chosen: Mapping[str, Mapping[str, object]], *, header: str = "") -> str:
    """sceau.toml with every setting of every section: the values in ``chosen`` (by
    section, then key), the dataclass defaults elsewhere, each with its comment. The
    values are checked as load_config checks them; secrets have no field, so never
    appear."""
    unknown = set(chosen) - {cls.TABLE for cls in SECTIONS}
    if unknown:
        raise ConfigError(f"{CONFIG_FILE}: unknown section(s) {sorted(unknown)}")
    parts = [*toml_comment(header)] if header else []
    for cls in SECTIONS:
        values = dict(chosen.get(cls.TABLE, {}))
        names = {f.name for f in fields(cls)}
        if not set(values) <= names:
            extra = sorted(set(values) - names)
            raise ConfigError(f"{CONFIG_FILE}: unknown key(s) {extra} in [{cls.TABLE}]")
        section = cls(**values)  # refuses what load_config would refuse
        items: dict[str, tuple[str, object]] = {}
        for f in fields(section):
            rule = _rule(f)
            allowed = rule.allowed()
            comment = f"{rule.doc} Allowed: {allowed}." if allowed else rule.doc
            items[f.name] = (comment, getattr(section, f.name))
        parts.append("\n" + toml_table((cls.TABLE,), cls.__doc__ or "", items).rstrip("\n"))
    return "\n".join(parts).lstrip("\n") + "\n"
