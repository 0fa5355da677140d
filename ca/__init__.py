"""The core of Sceau: HSM keys, database, profiles, issuance, revocation, audit log."""

__version__ = "0.1.0"
