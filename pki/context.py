"""The service context of a PKI service: the platform's (``core.context``) plus the
certificate profiles and the registry of our issuing CAs, which every PKI service reads."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from core.config import SceauConfig, load_config
from core.context import EXTENSION, ServiceContext
from pki.issuers import IssuerRegistry
from pki.profiles import ProfileSet
from pki.tbs import Urls


@dataclass
class PkiContext(ServiceContext):
    profiles: ProfileSet
    issuers: IssuerRegistry

    @classmethod
    def open(cls, config: SceauConfig | None = None) -> PkiContext:
        platform = ServiceContext.open_platform(config or load_config())
        return cls(
            platform.config,
            platform.db,
            platform.keys,
            platform.sealer,
            ProfileSet.load(),
            IssuerRegistry(platform.db),
        )

    @property
    def urls(self) -> Urls:
        return Urls(self.config.service.base_url.rstrip("/"), self.config.service.documents_base)


def context(app: Flask | None = None) -> PkiContext:
    """The PKI context of ``app`` (by default the current one)."""
    ctx = (app or current_app).extensions[EXTENSION]
    if not isinstance(ctx, PkiContext):
        raise TypeError("this service was built on a platform context, not a PKI one")
    return ctx
