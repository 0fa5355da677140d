"""What every command needs: the home, the operator it acts as, the time, and the PKI
context opened for the command's duration."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from core.config import SceauConfig, default_home, load_config
from pki.context import PkiContext


def home(args: argparse.Namespace) -> Path:
    return Path(args.home).resolve() if args.home else default_home()


def config(args: argparse.Namespace) -> SceauConfig:
    return load_config(home(args))


def operator() -> str:
    """The audit actor of a command: the operator's login name."""
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator:unknown"


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[PkiContext]:
    """The home's PKI context (database pool, token, profiles, issuers), closed after."""
    ctx = PkiContext.open(config(args))
    try:
        yield ctx
    finally:
        ctx.keys.close()
        ctx.db.dispose()
