"""Partitioned CRLs (`[crl] shards`), on a home of their own (SQLite): each certificate on
exactly the shard its CRL distribution point names, each shard's CRL saying so in its
issuingDistributionPoint, and OpenSSL judging each certificate by its own shard only.
Also `sceau crl publish`, run as a user runs it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from werkzeug.test import Client as WsgiClient

from core.config import load_config
from crl.publisher import FULL, CrlPublisher
from pki.context import PkiContext
from sceau.devserver import create_app
from tests.support.clients import ApiClient
from tests.support.crl import ca_der, fetch_crl
from tests.support.issuance import issue, revoke
from tests.support.judges import BIN, lint_crl, openssl_crl_verify, openssl_verify_with_crl, run
from tests.support.pki import PUBLIC_URL, Pki, make_home

# A home of its own (a second key ceremony), four shards, OpenSSL and pkilint on each: slow.
pytestmark = pytest.mark.slow

SHARDS = 4
CERTIFICATES = 10
KEPT = 2  # certificates not revoked at setup (the first stays valid throughout)


@dataclass
class Sharded:
    pki: Pki
    api: ApiClient
    legacy: dict[str, Any]  # issued before sharding: its CRL is persons.crl
    certs: list[dict[str, Any]]  # issued with 4 shards
    revoked: set[str]  # serials

    @property
    def http(self) -> WsgiClient:
        return self.api.http


def shard_of(cert: dict[str, Any]) -> int:
    return int(cert["serial"], 16) % SHARDS


def crldp(cert: dict[str, Any]) -> str:
    leaf = x509.load_pem_x509_certificate(cert["certificate"].encode())
    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    (point,) = points
    assert point.full_name is not None
    (uri,) = point.full_name
    return str(uri.value)


def serials(der: bytes) -> set[str]:
    return {format(r.serial_number, "x") for r in x509.load_der_x509_crl(der)}


def idp_urls(der: bytes) -> list[str] | None:
    crl = x509.load_der_x509_crl(der)
    try:
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    except x509.ExtensionNotFound:
        return None
    assert idp.critical  # RFC 5280 section 5.2.5
    assert idp.value.full_name is not None
    return [str(name.value) for name in idp.value.full_name]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path) -> Iterator[Sharded]:
    home = tmp_path_factory.mktemp("crl-shards")
    config, _ = make_home(home, softhsm_conf, None, "test-crl-shards")
    before = PkiContext.open(config)
    app = create_app(ctx=before, start_jobs=False)
    first_client = Pki("sqlite", home, config, before, app).client("person-lcp")
    legacy = issue(first_client)
    before.db.dispose()
    # The operator turns sharding on; certificates issued from now on name their shard.
    toml = home / "sceau.toml"
    toml.write_text(toml.read_text().replace("shards = 1\n", f"shards = {SHARDS}\n"))
    config = load_config(home)
    assert config.crl.shards == SHARDS
    ctx = PkiContext.open(config)
    pki = Pki("sqlite", home, config, ctx, create_app(ctx=ctx, start_jobs=False))
    api = pki.client("person-lcp")
    certs = [issue(api) for _ in range(CERTIFICATES)]
    reasons = itertools.cycle(
        ["keyCompromise", "superseded", "unspecified", "cessationOfOperation"]
    )
    revoke(
        ApiClient(api.http, first_client.token, first_client.name), legacy["serial"], "superseded"
    )
    for cert in certs[KEPT:]:
        revoke(api, cert["serial"], next(reasons))
    CrlPublisher(ctx).publish_all(datetime.now(UTC))
    revoked = {legacy["serial"], *(c["serial"] for c in certs[KEPT:])}
    yield Sharded(pki, api, legacy, certs, revoked)
    ctx.db.dispose()


def test_each_certificate_names_its_shard(sharded: Sharded) -> None:
    assert crldp(sharded.legacy) == f"{PUBLIC_URL}/crl/persons.crl"
    for cert in sharded.certs:
        assert crldp(cert) == f"{PUBLIC_URL}/crl/persons-{shard_of(cert)}.crl"


def test_each_shard_lists_exactly_its_certificates(sharded: Sharded) -> None:
    revoked = sharded.revoked
    for shard in range(SHARDS):
        der = fetch_crl(sharded.http, f"persons-{shard}")
        assert idp_urls(der) == [f"{PUBLIC_URL}/crl/persons-{shard}.crl"]
        expected = {c["serial"] for c in sharded.certs if shard_of(c) == shard} & revoked
        assert serials(der) == expected
        assert idp_urls(fetch_crl(sharded.http, f"seals-{shard}")) == [
            f"{PUBLIC_URL}/crl/seals-{shard}.crl"
        ]
    # persons.crl is now the partition of the certificates issued before sharding.
    full = fetch_crl(sharded.http, "persons")
    assert idp_urls(full) == [f"{PUBLIC_URL}/crl/persons.crl"]
    assert serials(full) == {sharded.legacy["serial"]}
    # The root's certificates are CA certificates, never sharded: its ARL stays complete.
    assert idp_urls(fetch_crl(sharded.http, "root")) is None
    for path in ("persons-4", "persons-02", "root-0"):
        assert sharded.http.get(f"/crl/{path}.crl").status_code == 404


def test_openssl_judges_each_certificate_by_its_own_shard(sharded: Sharded, tmp_path: Path) -> None:
    for cert in [sharded.legacy, *sharded.certs]:
        own = crldp(cert).rsplit("/", 1)[1].removesuffix(".crl")
        code, out = openssl_verify_with_crl(
            tmp_path, cert["certificate"], cert["chain"], fetch_crl(sharded.http, own)
        )
        if cert["serial"] in sharded.revoked:
            assert code != 0 and "certificate revoked" in out, out
        else:
            assert code == 0, out
    # Another shard's CRL does not cover the certificate: its IDP does not match the
    # certificate's CRL distribution point, so OpenSSL refuses it rather than calling the
    # certificate good.
    cert = sharded.certs[0]
    other = f"persons-{(shard_of(cert) + 1) % SHARDS}"
    code, out = openssl_verify_with_crl(
        tmp_path, cert["certificate"], cert["chain"], fetch_crl(sharded.http, other)
    )
    assert code != 0 and "different CRL scope" in out, out


def test_every_partition_verifies_and_lints(sharded: Sharded, tmp_path: Path) -> None:
    names = ["root"] + [
        f"{issuer}{suffix}"
        for issuer in ("persons", "seals")
        for suffix in ["", *(f"-{n}" for n in range(SHARDS))]
    ]
    for name in names:
        issuer = name.split("-")[0]
        der = fetch_crl(sharded.http, name)
        assert "verify OK" in openssl_crl_verify(tmp_path, der, ca_der(sharded.http, issuer))
        code, findings = lint_crl(tmp_path, der, "ARL" if issuer == "root" else "CRL")
        assert code == 0, (name, findings)


def test_a_revocation_republishes_its_shard_only(sharded: Sharded) -> None:
    publisher = CrlPublisher(sharded.pki.ctx)
    publisher.publish_changed(datetime.now(UTC))  # settle this new instance
    cert = sharded.certs[KEPT - 1]
    assert cert["serial"] not in sharded.revoked
    revoke(sharded.api, cert["serial"], "privilegeWithdrawn")
    sharded.revoked.add(cert["serial"])
    changed = publisher.publish_changed(datetime.now(UTC))
    assert [(c.issuer_id, c.shard) for c in changed] == [("persons", shard_of(cert))]
    assert cert["serial"] in serials(fetch_crl(sharded.http, f"persons-{shard_of(cert)}"))


def test_lowering_shards_keeps_publishing_them(sharded: Sharded) -> None:
    """Certificates keep the shard fixed at issuance: with shards back at 1, persons.crl is
    complete again and the shard CRLs are still published for the certificates naming them."""
    ctx = sharded.pki.ctx
    config = replace(ctx.config, crl=replace(ctx.config.crl, shards=1))
    lowered = replace(ctx, config=config)
    published = CrlPublisher(lowered).publish_all(datetime.now(UTC))
    scopes = {(p.issuer_id, p.shard) for p in published}
    assert {("persons", FULL), *(("persons", n) for n in range(SHARDS))} <= scopes
    full = fetch_crl(sharded.http, "persons")
    assert idp_urls(full) is None
    assert serials(full) == sharded.revoked


def test_sceau_crl_publish(sharded: Sharded) -> None:
    home = sharded.pki.home
    done = run(BIN / "sceau", "--home", home, "crl", "publish")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    urls = {line.split(": ", 1)[0] for line in lines}
    assert f"{PUBLIC_URL}/crl/root.crl" in urls
    assert {f"{PUBLIC_URL}/crl/persons-{n}.crl" for n in range(SHARDS)} <= urls
    assert all("number" in line and "next update" in line for line in lines)
    audit = run(BIN / "sceau", "--home", home, "audit", "verify")
    assert audit.returncode == 0 and "intact" in audit.stdout
