"""Officer accounts, browser-less logins and pending proofs with evidence, for the officer
(/ra/admin) and auditor (/audit) UI tests."""

from __future__ import annotations

import copy
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from werkzeug.test import Client as WsgiClient
from werkzeug.test import TestResponse

from core.accounts.officers import NewOfficer, Role, create_officer
from tests.support.clients import ApiClient
from tests.support.evidence import upload
from tests.support.pki import Pki

ADMIN = "/ra/admin"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass
class Person:
    """An officer account with what its owner holds: password and TOTP secret."""

    name: str
    role: Role
    password: str
    secret: str
    steps_used: int = 0

    def code(self) -> str:
        """A fresh code each call: the next time step within the accepted window, so one
        test can log the same person in more than once (a code is refused when replayed)."""
        offset = self.steps_used - 1  # -1, 0, +1: what valid_window=1 accepts
        self.steps_used += 1
        assert offset <= 1, "at most three logins per person and 30 s"
        return pyotp.TOTP(self.secret).at(datetime.now(UTC) + timedelta(seconds=30 * offset))


def new_person(pki: Pki, role: Role, prefix: str = "") -> Person:
    name = f"{prefix or role.value.split('-')[0]}-{secrets.token_hex(3)}"
    made: NewOfficer = create_officer(
        pki.ctx.db, pki.ctx.sealer, name, role, now=datetime.now(UTC), actor="test"
    )
    return Person(name, role, made.password, pyotp.parse_uri(made.provisioning_uri).secret)


def form_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no csrf_token in the page"
    return match.group(1)


def post_login(http: WsgiClient, person: Person, *, ui: str = ADMIN) -> TestResponse:
    """Fill and send the login form of the UI mounted at ``ui`` (/ra/admin, /audit) as
    ``person``, with a fresh code: the answer, whatever it is."""
    page = http.get(f"{ui}/login")
    assert page.status_code == 200
    return http.post(
        f"{ui}/login",
        data={
            "csrf_token": form_token(page.text),
            "name": person.name,
            "password": person.password,
            "code": person.code(),
        },
    )


def login(
    pki: Pki, person: Person, http: WsgiClient | None = None, *, ui: str = ADMIN
) -> WsgiClient:
    """Log ``person`` in on the UI mounted at ``ui`` (/ra/admin, /audit)."""
    http = http or WsgiClient(pki.app)
    resp = post_login(http, person, ui=ui)
    assert resp.status_code == 303, resp.text
    return http


def page_token(http: WsgiClient, path: str = f"{ADMIN}/queue") -> str:
    page = http.get(path)
    assert page.status_code == 200, page.text
    return form_token(page.text)


def submit(
    api: ApiClient, body: dict[str, Any], method: str, *, image: bytes | None = None, **subject: str
) -> str:
    """A pending proof by ``method``, with a document image (PNG) when given; its id."""
    body = copy.deepcopy(body)
    body["method"] = method
    body["subject"].update(subject)
    resp = api.post("/ra/api/v1/identity-proofs", body)
    assert resp.status_code == 201, resp.json
    proof_id = str(resp.json["id"])
    if image is not None:
        kind = "document-front" if body["subject_kind"] == "natural" else "company-extract"
        up = upload(api, proof_id, image, "image/png", kind)
        assert up.status_code == 201, up.json
    return proof_id
