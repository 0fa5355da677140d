"""Sceau tsa."""
