"""Sceau crl."""
