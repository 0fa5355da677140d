"""Random and mutated TimeStampReqs thrown at the parser and at POST /tsa: the parser
returns a request or raises TsaRejection, nothing else; the service always answers a
TimeStampResp (never a 500), grants exactly what the parser accepts under our policy, and
never puts a token in a rejection. Bounded: a fixed number of examples, derandomized."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.pki import Pki
from tests.support.tsa import REPLY, TimeStampResp, failure_of, granted_token, make_tsa, query
from tsa.request import TimestampRequest, parse_request
from tsa.response import TsaRejection
from tsa.token import BTSP_POLICY

# Hypothesis runs many examples per backend: slow.
pytestmark = pytest.mark.slow

HASHES = ["sha256", "sha384", "sha512", "sha1", "md5", "sha224"]
OIDS = st.sampled_from(
    [
        BTSP_POLICY,
        "1.2.3.4",
        "2.16.840.1.101.3.4.2.1",  # sha256 where a policy is expected
        "1.3.14.3.2.26",
        "2.999.1234567890123",
        "0.0",
    ]
)


@st.composite
def valid_queries(draw: st.DrawFn) -> bytes:
    return query(
        draw(st.sampled_from(HASHES[:3])),
        nonce=draw(st.none() | st.integers(min_value=-(2**200), max_value=2**200)),
        cert_req=draw(st.booleans()),
        policy=draw(st.none() | st.just(BTSP_POLICY)),
    )


@st.composite
def structured_queries(draw: st.DrawFn) -> bytes:
    """TimeStampReqs with each field drawn at random, odd values included."""
    extensions: list[dict[str, Any]] | None = None
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        extensions = [
            {
                "extn_id": draw(OIDS),
                "critical": draw(st.booleans()),
                "extn_value": draw(st.binary(max_size=8)),
            }
        ]
    # Each odd value is drawn now and then, so that the checks after it run too.
    return query(
        draw(st.sampled_from(HASHES[:3]) | st.sampled_from(HASHES)),
        digest=draw(st.none() | st.none() | st.binary(max_size=80)),
        nonce=draw(st.none() | st.integers(min_value=-(2**70), max_value=2**170)),
        cert_req=draw(st.booleans()),
        policy=draw(st.none() | OIDS),
        version=draw(st.just(1) | st.just(1) | st.integers(min_value=-3, max_value=300)),
        extensions=extensions,
    )


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    """A valid query with bytes flipped, cut, inserted or lengths rewritten."""
    body = bytearray(draw(valid_queries()))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=max(0, len(body) - 1)))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "byte"]))
        if kind == "flip" and body:
            body[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "cut":
            del body[at:]
        elif kind == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "delete":
            del body[at : at + draw(st.integers(min_value=1, max_value=4))]
        elif body:
            body[at] = draw(st.sampled_from([0x00, 0x80, 0x81, 0x82, 0x84, 0xFF, 0x30, 0xA0]))
    return bytes(body)


REQUESTS = st.binary(max_size=300) | structured_queries() | mutated_queries() | valid_queries()


def oracle(body: bytes) -> TimestampRequest | None:
    """What the service must grant: a request the parser accepts, under our policy."""
    try:
        parsed = parse_request(body)
    except TsaRejection:
        return None
    return parsed if parsed.req_policy in (None, BTSP_POLICY) else None


@settings(max_examples=500, deadline=None, derandomize=True)
@given(body=REQUESTS)
def test_parser_accepts_or_rejects(body: bytes) -> None:
    try:
        parsed = parse_request(body)
    except TsaRejection as exc:
        assert exc.detail  # the statusString the client reads
        return
    assert len(parsed.hashed_message) == parsed.hash.size
    assert parsed.message_imprint_der()  # what the token will carry encodes


def test_service_never_breaks(pki: Pki) -> None:
    tsa = make_tsa(pki)

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(body=REQUESTS)
    def check(body: bytes) -> None:
        answer = tsa.post(body)
        assert answer.status_code == 200, answer.data
        assert answer.mimetype == REPLY
        resp = TimeStampResp.load(answer.data)
        expected = oracle(body)
        if expected is None:
            event(failure_of(resp))  # a rejection with one failure bit, and no token
            return
        event("granted")
        _, tst = granted_token(resp)
        assert tst["message_imprint"]["hashed_message"].native == expected.hashed_message
        assert tst["nonce"].native == expected.nonce

    try:
        check()
    finally:
        tsa.service.authority.records.close()


@pytest.mark.parametrize("size", [0, 1, 8192, 8193, 70000])
def test_body_sizes(pki: Pki, size: int) -> None:
    tsa = make_tsa(pki)
    try:
        answer = tsa.post(secrets.token_bytes(size))
        if size > 8192:
            assert answer.status_code == 413  # a transport error, not a TimeStampResp
        else:
            assert failure_of(TimeStampResp.load(answer.data)) == "bad_data_format"
    finally:
        tsa.service.authority.records.close()
