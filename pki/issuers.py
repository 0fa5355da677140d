"""Our CAs as the pipeline sees them: name, key identifier, signing scheme, certificate."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from asn1crypto import x509

from core.errors import ConfigError, ErrorKind, SceauError
from core.hsm.algorithms import KeyAlgorithm, default_scheme
from core.store.db import Database
from core.store.models import Issuer
from pki.profiles import IssuerId
from pki.tbs import IssuerInfo

V = TypeVar("V")


def cached_issuer(
    issuer_id: str, cache: Callable[[], Mapping[str, V]], reload: Callable[[], None]
) -> V:
    """``issuer_id``'s entry in a cache of our CAs (``cache()``: the current one), reloaded
    first when it has none (a CA made by a key ceremony since); a ConfigError when it still
    has none."""
    if issuer_id not in cache():
        reload()
    entry = cache().get(issuer_id)
    if entry is None:
        raise ConfigError(f"issuer {issuer_id!r} has no certificate: run `sceau init`")
    return entry


@dataclass(frozen=True)
class LoadedIssuer:
    info: IssuerInfo
    key_label: str
    certificate: bytes
    parent_id: str | None

    @property
    def id(self) -> IssuerId:
        return IssuerId(self.info.id)


class IssuerRegistry:
    """Issuer rows loaded once; they change only at a key ceremony."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, LoadedIssuer] = {}

    def reload(self) -> None:
        with self._db.read() as session:
            rows = session.query(Issuer).all()
        cache = {}
        for row in rows:
            if row.certificate is None:
                continue
            cert = x509.Certificate.load(row.certificate)
            info = IssuerInfo(
                id=row.id,
                name=cert.subject,
                key_id=cert.key_identifier,
                not_after=cert.not_valid_after,
                scheme=default_scheme(KeyAlgorithm(row.key_algorithm)),
            )
            cache[row.id] = LoadedIssuer(info, row.key_label, row.certificate, row.parent_id)
        self._cache = cache

    def get(self, issuer_id: str) -> LoadedIssuer:
        return cached_issuer(issuer_id, lambda: self._cache, self.reload)

    def find(self, issuer_id: str) -> LoadedIssuer:
        """Like get, for ids that come from a request: unknown is the caller's error."""
        try:
            return self.get(issuer_id)
        except ConfigError:
            raise SceauError(ErrorKind.NOT_FOUND, f"unknown issuer {issuer_id!r}") from None

    def chain(self, issuer_id: str) -> list[bytes]:
        """The issuer's certificate and its ancestors, up to and including the root."""
        out: list[bytes] = []
        current: str | None = issuer_id
        while current is not None:
            issuer = self.get(current)
            out.append(issuer.certificate)
            current = issuer.parent_id
        return out

    def all(self) -> list[LoadedIssuer]:
        self.reload()
        return list(self._cache.values())
