"""Sceau policies."""
