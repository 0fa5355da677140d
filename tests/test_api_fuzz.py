"""Random JSON thrown at the platform API: always a 4xx problem document or a success, never a
500, and a refused request leaves no row behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.store.models import Certificate, IdentityProof
from tests.support.builders import NATURAL
from tests.support.pki import Pki

# Hypothesis runs many examples per backend: slow.
pytestmark = pytest.mark.slow

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """A valid proof request with one field replaced by random JSON."""
    paths = [
        ("subject_kind",),
        ("method",),
        ("subject",),
        ("document",),
        ("subject", "given_name"),
        ("subject", "country"),
        ("subject", "email"),
        ("document", "expires_on"),
        ("document", "type"),
        ("document", "number"),
    ]

    def mutate(path: tuple[str, ...], value: Any) -> dict[str, Any]:
        body = json.loads(json.dumps(NATURAL))
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return body

    return st.builds(mutate, st.sampled_from(paths), JSON)


def _counts(pki: Pki) -> tuple[int, int]:
    with pki.ctx.db.read() as session:
        return session.query(IdentityProof).count(), session.query(Certificate).count()


@pytest.mark.parametrize("path", ["/ra/api/v1/identity-proofs", "/ca/api/v1/certificates"])
def test_random_json_never_breaks_the_api(pki: Pki, path: str) -> None:
    api = pki.client("person-lcp")

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(body=JSON | _mutations())
    def check(body: Any) -> None:
        before = _counts(pki)
        resp = api.post(path, body)
        assert resp.status_code < 500, resp.json
        if resp.status_code >= 400:
            assert resp.mimetype == "application/problem+json"
            assert _counts(pki) == before

    check()


def test_random_bytes_never_break_the_api(pki: Pki) -> None:
    api = pki.client("person-lcp")

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(body=st.binary(max_size=300))
    def check(body: bytes) -> None:
        resp = api.http.post(
            "/ca/api/v1/certificates",
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {api.token}"},
        )
        assert 400 <= resp.status_code < 500

    check()
