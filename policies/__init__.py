"""Certification policies and the machine-readable certificate profiles they define."""

from pathlib import Path

PROFILES_DIR = Path(__file__).parent / "profiles"
