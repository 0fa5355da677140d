"""Random and mutated DER thrown at /ocsp over POST and GET: never a 500, always a well-formed
OCSPResponse, and an error status only among malformedRequest and unauthorized; what
succeeds is a verifiable response."""

from __future__ import annotations

import base64
import string
from dataclasses import dataclass

import pytest
from asn1crypto import ocsp as aocsp
from cryptography import x509
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client as WsgiClient

from tests.support.ocsp import issue_leaf, request_der, verified
from tests.support.pki import Pki

# Hypothesis runs many examples per backend: slow.
pytestmark = pytest.mark.slow

EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ANSWERS = {"successful", "malformed_request", "unauthorized"}


@dataclass
class Seed:
    http: WsgiClient
    request: bytes  # a valid request, with a nonce: mutations must not hit the cache
    issuer: bytes


@pytest.fixture(scope="module")
def seed(pki: Pki) -> Seed:
    leaf, chain = issue_leaf(pki.client("person-lcp"))
    der = request_der(leaf, x509.load_der_x509_certificate(chain[0]), nonce=b"n" * 16)
    return Seed(WsgiClient(pki.app), der, chain[0])


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    position = st.integers(0, len(valid))
    return st.one_of(
        st.binary(max_size=400),
        st.builds(lambda i: valid[:i], position),  # truncated
        st.builds(
            lambda i, b: valid[:i] + b + valid[i:], position, st.binary(min_size=1, max_size=8)
        ),
        st.builds(
            lambda i, b: valid[:i] + bytes([b]) + valid[i + 1 :], position, st.integers(0, 255)
        ),
        st.builds(
            lambda i, j, b: valid[: min(i, j)] + b + valid[max(i, j) :],
            position,
            position,
            st.binary(max_size=16),
        ),
    )


def _check(seed: Seed, status: int, body: bytes) -> None:
    assert status == 200, body
    response = aocsp.OCSPResponse.load(body, strict=True)
    assert response["response_status"].native in ANSWERS
    event(response["response_status"].native)  # --hypothesis-show-statistics
    if response["response_status"].native == "successful":
        verified(body, seed.issuer)
    else:
        assert response["response_bytes"].native is None


@given(data=st.data())
@EXAMPLES
def test_mutated_requests_never_break_the_responder(seed: Seed, data: st.DataObject) -> None:
    der = data.draw(_mutations(seed.request))
    posted = seed.http.post("/ocsp", data=der, content_type="application/ocsp-request")
    _check(seed, posted.status_code, posted.data)
    encoded = data.draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))(der).decode()
    fetched = seed.http.get(f"/ocsp/{encoded}")
    _check(seed, fetched.status_code, fetched.data)


@given(path=st.text(string.ascii_letters + string.digits + "+/=-_%", max_size=200))
@EXAMPLES
def test_random_get_paths_never_break_the_responder(seed: Seed, path: str) -> None:
    fetched = seed.http.get(f"/ocsp/{path}")
    _check(seed, fetched.status_code, fetched.data)
