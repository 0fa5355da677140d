"""Sceau sceau."""
