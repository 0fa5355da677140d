"""What a service needs at run time from the platform, opened once per process: the
configuration, the database, the key store and the record envelopes. PKI services extend
it with their profiles and issuers (``pki.context``)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from core.config import SceauConfig, load_config
from core.hsm.envelope import Sealer
from core.hsm.keystore import KeyStore
from core.store.db import Database, schema_version

EXTENSION = "sceau"


@dataclass
class ServiceContext:
    config: SceauConfig
    db: Database
    keys: KeyStore
    sealer: Sealer

    @classmethod
    def open_platform(cls, config: SceauConfig | None = None) -> ServiceContext:
        config = config or load_config()
        # The PKCS#11 session itself opens lazily, in the process that signs (after fork).
        keys = KeyStore(config.hsm)
        return cls(config, Database(config.database.url), keys, Sealer(keys))

    def schema(self) -> str | None:
        return schema_version(self.db)

    def attach(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self


def context(app: Flask | None = None) -> ServiceContext:
    """The context of ``app`` (by default the current one)."""
    ctx: ServiceContext = (app or current_app).extensions[EXTENSION]
    return ctx
