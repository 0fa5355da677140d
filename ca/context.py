"""What a service needs at run time, opened once per application."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from ca.authority import CertificateAuthority
from ca.config import SceauConfig, load_config
from ca.hsm import KeyStore
from ca.profiles import ProfileSet
from ca.sealing import Sealer
from ca.store.db import Database, schema_version

EXTENSION = "sceau"


@dataclass
class ServiceContext:
    config: SceauConfig
    db: Database
    keys: KeyStore
    profiles: ProfileSet
    authority: CertificateAuthority
    sealer: Sealer

    @classmethod
    def open(cls, config: SceauConfig | None = None) -> ServiceContext:
        config = config or load_config()
        db = Database(config.database.url)
        # The PKCS#11 session itself opens lazily, in the process that signs (after fork).
        keys = KeyStore(config.hsm)
        profiles = ProfileSet.load()
        sealer = Sealer(keys)
        authority = CertificateAuthority(config, db, keys, profiles, sealer)
        return cls(config, db, keys, profiles, authority, sealer)

    def schema(self) -> str | None:
        return schema_version(self.db)

    def attach(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self


def context() -> ServiceContext:
    ctx: ServiceContext = current_app.extensions[EXTENSION]
    return ctx
