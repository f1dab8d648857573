"""Customer session tokens: JWT HS256 under the session secret, one purpose per door."""

from __future__ import annotations

import time

import jwt
import pytest

from services.tier1_selfheal.auth import (
    COOKIE_NAME,
    InvalidSession,
    issue_session_token,
    token_from,
    verify_token,
)
from tierline.stripe_adapter import sign_link_token

pytestmark = pytest.mark.unit
SECRET = "unit-test-secret-with-enough-length-for-hs256"  # noqa: S105 - test-only key


def test_given_issued_session_when_verified_then_subject_is_the_customer() -> None:
    claims = verify_token(SECRET, issue_session_token(SECRET, "cus_A", ttl_s=60))
    assert (claims.subject, claims.purpose) == ("cus_A", "customer_session")
    assert claims.expires_at > time.time()


def test_given_plain_sub_exp_token_when_verified_then_read_as_a_session() -> None:
    token = jwt.encode({"sub": "cus_B", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert verify_token(SECRET, token).subject == "cus_B"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-jwt",
        issue_session_token("another-secret-another-secret-another", "cus_A"),
        issue_session_token(SECRET, "cus_A", ttl_s=-10),
        jwt.encode({"sub": "cus_A"}, SECRET, algorithm="HS256"),  # no exp
        jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),  # no sub
        jwt.encode(
            {"sub": "agent-1", "exp": int(time.time()) + 60, "aud": "tierline-console"},
            SECRET,
            algorithm="HS256",
        ),  # a console token
        jwt.encode({"sub": "cus_A", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512"),
    ],
)
def test_given_bad_token_when_verified_then_invalid_session(token: str | None) -> None:
    with pytest.raises(InvalidSession):
        verify_token(SECRET, token)


def test_given_link_token_when_used_as_session_then_refused_but_accepted_by_its_own_door() -> None:
    link = sign_link_token(SECRET, purpose="update_card", subject="cus_A", expires_at=int(time.time()) + 60)
    with pytest.raises(InvalidSession, match="update_card"):
        verify_token(SECRET, link)
    assert verify_token(SECRET, link, purposes=("update_card",)).subject == "cus_A"


def test_given_request_when_reading_token_then_header_beats_cookie_and_query_only_when_allowed() -> None:
    assert token_from({"authorization": "Bearer abc"}, {COOKIE_NAME: "c"}) == "abc"
    assert token_from({}, {COOKIE_NAME: "c"}) == "c"
    assert token_from({}, {}, {"token": "q"}) == "q"
    assert token_from({}, {}) is None
