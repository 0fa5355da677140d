"""Clients of the services under test: a platform's bearer-token client of the JSON APIs,
in process (werkzeug), and one request over loopback HTTP to a running server."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from werkzeug.test import Client as WsgiClient

LOOPBACK = "127.0.0.1"


@dataclass
class ApiClient:
    """A platform API client (``sceau client add``): its token goes with every request."""

    http: WsgiClient
    token: str
    name: str

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.post(
            path,
            data=json.dumps(body),
            headers=headers,
            content_type=kw.pop("content_type", "application/json"),
            **kw,
        )

    def get(self, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.get(path, headers=headers, **kw)


def http_request(  # noqa: PLR0913 - one HTTP request, spelled out
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request to a server on 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()
