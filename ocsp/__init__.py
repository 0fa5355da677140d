"""Sceau ocsp."""
