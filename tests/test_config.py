"""sceau.toml: written from the section dataclasses (core.config), loaded back the same, a
bad value refused once with a message naming section, key and what is allowed, and the
files earlier releases wrote still loading."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from core.config import (
    CONFIG_FILE,
    SECRETS_FILE,
    SECTIONS,
    AuditConfig,
    CrlConfig,
    OcspConfig,
    SceauConfig,
    Section,
    config_toml,
    load_config,
    toml_table,
    toml_value,
)
from core.errors import ConfigError
from sceau.home import HEADER, LOOPBACK_FINDINGS, HomeChoices
from tests.support.pki import Pki

RELEASE_TOML = Path(__file__).parent / "data" / "release-0.1.0" / "sceau.toml"
REQUIRED = {"database": {"url": "sqlite:////nowhere/sceau.db"}, "hsm": {"module": "/x.so"}}


def write_home(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / CONFIG_FILE).write_text(text)
    secrets = home / SECRETS_FILE
    secrets.write_text('hsm_user_pin = "1234"\nhsm_so_pin = "5678"\n')
    secrets.chmod(0o600)
    return home


def sections(config: SceauConfig) -> dict[str, dict[str, Any]]:
    """The loaded configuration by section and key, as sceau.toml spells it."""
    out = {}
    for cls in SECTIONS:
        if cls.TABLE == "hsm":
            hsm = config.hsm
            conf = "" if hsm.softhsm_conf is None else hsm.softhsm_conf.name
            values = {"module": str(hsm.module), "token_label": hsm.token_label}
            out["hsm"] = {**values, "softhsm_conf": conf}
        else:
            out[cls.TABLE] = dataclasses.asdict(getattr(config, cls.TABLE))
    return out


def defaults_with(chosen: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    expected = {}
    for cls in SECTIONS:
        values = {f.name: f.default for f in dataclasses.fields(cls)}
        expected[cls.TABLE] = {**values, **chosen.get(cls.TABLE, {})}
    expected["lint"]["accept_findings"] = tuple(expected["lint"]["accept_findings"])
    return expected


# -- written by init, loaded back ------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "findings"),
    [
        pytest.param("http://127.0.0.1:8000", LOOPBACK_FINDINGS, id="loopback"),
        pytest.param("http://pki.example.com", (), id="public"),
    ],
)
def test_the_file_init_writes_loads_back_as_written(
    tmp_path: Path, base_url: str, findings: tuple[str, ...]
) -> None:
    home = tmp_path / "home"
    choices = HomeChoices(home, base_url, "https://docs.example.com", None, "label-1")
    chosen = choices.settings()
    text = config_toml(chosen, header=HEADER)
    config = load_config(write_home(home, text))
    assert sections(config) == defaults_with(chosen)
    assert config.lint.accept_findings == findings
    assert config.database.url == f"sqlite:///{home / 'sceau.db'}"
    assert config.hsm.softhsm_conf == home / "softhsm2.conf"
    # Every setting is in the file, with its explanation above it.
    raw = tomllib.loads(text)
    for cls in SECTIONS:
        assert set(raw[cls.TABLE]) == {f.name for f in dataclasses.fields(cls)}
    assert "# Partitions per issuing CA." in text and "Allowed: between 1 and 4096." in text


def test_a_home_made_by_init_rewrites_to_the_same_configuration(pki: Pki, tmp_path: Path) -> None:
    written = load_config(pki.home)
    again = load_config(write_home(tmp_path / "again", config_toml(sections(written))))
    assert sections(again) == sections(written)


def test_every_setting_explains_itself_and_none_is_a_secret() -> None:
    for cls in SECTIONS:
        assert cls.__doc__, cls
        for f in dataclasses.fields(cls):
            assert f.metadata["sceau"].doc, f"[{cls.TABLE}] {f.name} has no explanation"
            # Secrets (PINs, passwords) live in secrets.toml: no section has a field for one.
            assert not {"pin", "password", "secret"} & set(f.name.split("_")), f.name


def test_the_release_file_and_files_without_new_keys_load(tmp_path: Path) -> None:
    released = RELEASE_TOML.read_text()
    config = load_config(write_home(tmp_path / "release", released))
    assert config.service.base_url == "http://pki.example.com"
    assert config.tsa.clock_check == "off"
    # Keys that release did not write take their defaults.
    assert config.audit == AuditConfig()
    assert config.registration.retention_years == 7
    assert config.signing.smtp_port == 587
    minimal = '[database]\nurl = "sqlite:////x.db"\n[hsm]\nmodule = "/x.so"\n'
    config = load_config(write_home(tmp_path / "minimal", minimal))
    assert sections(config) == defaults_with(REQUIRED | {"database": {"url": "sqlite:////x.db"}})


# -- refused, with a message -----------------------------------------------------------------


def replacing(line: str, new: str) -> str:
    text = config_toml(REQUIRED)
    assert f"\n{line}\n" in text, line
    return text.replace(f"\n{line}\n", f"\n{new}\n")


BAD = [
    # The checks that were in ocsp/app.py and crl/schedule.py.
    ("response_validity_hours = 24", "0", "[ocsp] response_validity_hours must be at least 1"),
    ("revocation_check_ms = 250", "0", "[ocsp] revocation_check_ms must be between 1 and 1000"),
    ("revocation_check_ms = 250", "1001", "revocation_check_ms must be between 1 and 1000"),
    ("presign_interval_minutes = 10", "721", "presign_interval_minutes must be positive and"),
    ("presign_interval_minutes = 10", "0", "presign_interval_minutes must be at least 1"),
    ("max_request_bytes = 8192", "63", "[ocsp] max_request_bytes must be at least 64"),
    ("max_request_certs = 20", "0", "[ocsp] max_request_certs must be at least 1"),
    ("cache_entries = 100000", "0", "[ocsp] cache_entries must be at least 1"),
    ("shards = 1", "0", "[crl] shards must be between 1 and 4096"),
    ("shards = 1", "5000", "[crl] shards must be between 1 and 4096"),
    ("publish_interval_seconds = 3600", "86401", "publish_interval_seconds must be between"),
    ("next_update_hours = 24", "1", "next_update_hours (1 h) must exceed publish_interval"),
    ("arl_next_update_hours = 168", "9000", "arl_next_update_hours must be between 1 and 8784"),
    ("revocation_check_seconds = 1", "0", "[crl] revocation_check_seconds must be at least 1"),
    # Ranges added with the move.
    ("max_body_bytes = 65536", "10", "[service] max_body_bytes must be at least 1024, not 10"),
    ('base_url = "http://127.0.0.1:8000"', '"ftp://x"', "base_url must be an http:// or"),
    ('documents_url = ""', '"pki.example.com"', "documents_url must be empty or an http"),
    ('token_label = "sceau"', '""', "[hsm] token_label is required"),
    ('token_label = "sceau"', '"' + "x" * 33 + '"', "token_label must have at most 32 bytes"),
    ('country = "FR"', '"France"', "[ca] country must be two capital letters"),
    ('policy_arc = ""', '"1.2.x"', "[ca] policy_arc '1.2.x' is not an object identifier"),
    ("proof_max_age_days = 90", "0", "[registration] proof_max_age_days must be at least 1"),
    ("retention_years = 7", "0", "[registration] retention_years must be at least 1"),
    ("max_failed_logins = 5", "0", "max_failed_logins must be at least 1"),
    ("webhook_max_attempts = 10", "-1", "webhook_max_attempts must be at least 1, not -1"),
    ("accuracy_ms = 1000", "1500", "[tsa] accuracy_ms must be between 1 and 1000"),
    ('clock_check = "kernel"', '"ntp"', "[tsa] clock_check must be one of kernel, off, not 'ntp'"),
    ('record = "batch"', '"later"', "[tsa] record must be one of batch, sync"),
    ('auth = "open"', '"closed"', "[tsa] auth must be one of open, token"),
    ("rate_limit = 0", "-1", "[tsa] rate_limit must be at least 0"),
    ('policy_oid = ""', '"tsa"', "[tsa] policy_oid 'tsa' is not an object identifier"),
    ("smtp_port = 587", "70000", "[signing] smtp_port must be between 1 and 65535"),
    ('otp_channel = "file"', '"smtp"', 'otp_channel = "smtp" needs smtp_host and smtp_from'),
    ("otp_ttl_seconds = 300", "0", "[signing] otp_ttl_seconds must be at least 1"),
    ("checkpoint_every_events = 1000", "0", "[audit] checkpoint_every_events must be at least"),
    ('key_label = "sceau-audit"', '""', "[audit] key_label is required"),
    # Types, unknown and missing keys.
    ("shards = 1", '"1"', "[crl] shards must be a int"),
    ("shards = 1", "true", "[crl] shards must be a int"),
    ("accept_findings = []", '"x"', "[lint] accept_findings must be a list of strings"),
    ("shards = 1", "1\nshard = 2", "unknown key 'shard' in [crl]"),
    ('url = "sqlite:////nowhere/sceau.db"', 'url = ""', "[database] url is required"),
]


@pytest.mark.parametrize(
    ("line", "value", "message"),
    [pytest.param(line, value, message, id=message[:48]) for line, value, message in BAD],
)
def test_a_bad_value_is_refused_naming_section_key_and_range(
    tmp_path: Path, line: str, value: str, message: str
) -> None:
    key = line.split(" = ", maxsplit=1)[0]
    new = value if value.startswith(f"{key} = ") else f"{key} = {value}"
    home = write_home(tmp_path, replacing(line, new))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(home)


def test_unknown_sections_and_bad_tables_are_refused(tmp_path: Path) -> None:
    text = config_toml(REQUIRED)
    with pytest.raises(ConfigError, match=r"unknown section \[tsp\]"):
        load_config(write_home(tmp_path / "a", text + "[tsp]\nx = 1\n"))
    with pytest.raises(ConfigError, match=r"\[crl\] must be a table"):
        load_config(write_home(tmp_path / "b", 'crl = "often"\n' + text.split("[crl]")[0]))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shards": 0}, "shards"),
        ({"publish_interval_seconds": 0}, "publish_interval_seconds"),
        ({"publish_interval_seconds": 2 * 86400}, "publish_interval_seconds"),
        ({"next_update_hours": 1}, "lapse"),
        ({"arl_next_update_hours": 1}, "lapse"),
        ({"arl_next_update_hours": 24 * 400}, "arl_next_update_hours"),
        ({"revocation_check_seconds": 0}, "revocation_check_seconds"),
    ],
)
def test_a_section_checks_itself_whoever_builds_it(changes: dict[str, int], message: str) -> None:
    """Not only load_config: a section built or replaced in code is checked too."""
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(CrlConfig(), **changes)


def test_rules_between_fields_hold_for_any_builder() -> None:
    with pytest.raises(ConfigError, match="presign_interval_minutes must be positive and under"):
        OcspConfig(response_validity_hours=1, presign_interval_minutes=30)
    assert OcspConfig(response_validity_hours=1, presign_interval_minutes=29).cache_entries


def test_init_refuses_a_bad_choice_before_writing() -> None:
    with pytest.raises(ConfigError, match=r"\[service\] base_url must be an http"):
        config_toml({**REQUIRED, "service": {"base_url": "pki.example.com"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\] in \[ca\]"):
        config_toml({**REQUIRED, "ca": {"colour": "blue"}})
    with pytest.raises(ConfigError, match="unknown section"):
        config_toml({**REQUIRED, "cas": {}})


# -- the TOML writer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        'quote " and backslash \\ and C:\\path',
        "newline\nreturn\rtab\tbell\x07del\x7f nul\x00",
        "accents: é, ü, 中文, emoji 🔏",
        "",
        0,
        -12,
        2**40,
        True,
        False,
        1.5,
        -0.25,
        1e300,
        float("inf"),
        [],
        ["a", 'b"c', "d\\e"],
        ("tuple", "too"),
    ],
)
def test_toml_values_read_back_as_written(value: object) -> None:
    read = tomllib.loads(f"x = {toml_value(value)}\n")["x"]
    assert read == (list(value) if isinstance(value, tuple) else value)
    assert type(read) is (list if isinstance(value, tuple) else type(value))


def test_toml_tables_nest_and_quote_keys() -> None:
    text = toml_table(
        ("top",),
        "A table.",
        {"plain": ("A key.", 1), "odd key": ("", "x"), "sub": ("Nested.", {"deep": [1, 2]})},
    )
    assert tomllib.loads(text) == {"top": {"plain": 1, "odd key": "x", "sub": {"deep": [1, 2]}}}
    assert text.startswith("# A table.\n[top]\n# A key.\nplain = 1\n")
    assert "# Nested.\n[top.sub]\n" in text


def test_a_section_is_a_checked_frozen_dataclass() -> None:
    for cls in SECTIONS:
        assert issubclass(cls, Section) and cls.TABLE
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
