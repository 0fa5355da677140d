"""Sceau registration."""
