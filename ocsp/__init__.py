"""Sceau OCSP responder (RFC 6960, RFC 9919 lightweight profile): see ocsp.app."""
