"""The public repository as a relying party reads it: CRLs and CA certificates over HTTP."""

from __future__ import annotations

from werkzeug.test import Client as WsgiClient


def fetch_crl(http: WsgiClient, name: str) -> bytes:
    """GET /crl/``name``.crl: the DER CRL, served as application/pkix-crl."""
    resp = http.get(f"/crl/{name}.crl")
    assert resp.status_code == 200, resp.data
    assert resp.mimetype == "application/pkix-crl"
    return bytes(resp.data)


def ca_der(http: WsgiClient, issuer: str) -> bytes:
    """GET /certs/``issuer``.crt: the DER CA certificate (the AIA caIssuers URL)."""
    resp = http.get(f"/certs/{issuer}.crt")
    assert resp.status_code == 200
    return bytes(resp.data)
