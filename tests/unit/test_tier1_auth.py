"""Customer session tokens: JWT HS256 under the customer keys (by kid), links under the link secret;
one purpose per door."""

from __future__ import annotations

import time

import jwt
import pytest

from services.tier1_selfheal.auth import (
    COOKIE_NAME,
    CustomerKeys,
    InvalidSession,
    issue_session_token,
    token_from,
    verify_token,
)
from tierline.stripe_adapter import sign_link_token
from tierline.tokens import KeySet

pytestmark = pytest.mark.unit
SECRET = "unit-test-secret-with-enough-length-for-hs256"  # noqa: S105 - test-only key
SESSIONS = KeySet.single("customer", "c1", "unit-test-customer-key-with-enough-length")
KEYS = CustomerKeys(sessions=SESSIONS, link_secret=SECRET)
OTHER = KeySet.single("customer", "c1", "another-secret-another-secret-another")


def test_given_issued_session_when_verified_then_subject_is_the_customer() -> None:
    claims = verify_token(KEYS, issue_session_token(SESSIONS, "cus_A", ttl_s=60))
    assert (claims.subject, claims.purpose) == ("cus_A", "customer_session")
    assert claims.expires_at > time.time()


def test_given_plain_sub_exp_token_when_verified_then_read_as_a_session() -> None:
    token = SESSIONS.sign({"sub": "cus_B", "exp": int(time.time()) + 60})
    assert verify_token(KEYS, token).subject == "cus_B"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-jwt",
        issue_session_token(OTHER, "cus_A"),  # same kid, another key
        issue_session_token(SESSIONS, "cus_A", ttl_s=-10),
        SESSIONS.sign({"sub": "cus_A"}),  # no exp
        SESSIONS.sign({"exp": int(time.time()) + 60}),  # no sub
        SESSIONS.sign({"sub": "agent-1", "exp": int(time.time()) + 60, "aud": "tierline-console"}),
        jwt.encode(
            {"sub": "cus_A", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512", headers={"kid": "c1"}
        ),
        # a session without a kid, signed with the link secret (the shared secret of old): refused
        jwt.encode({"sub": "cus_A", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        # a link purpose under a session key: keys sign one kind only
        SESSIONS.sign({"sub": "cus_A", "exp": int(time.time()) + 60, "purpose": "update_card"}),
    ],
)
def test_given_bad_token_when_verified_then_invalid_session(token: str | None) -> None:
    with pytest.raises(InvalidSession):
        verify_token(KEYS, token)


def test_given_link_token_when_used_as_session_then_refused_but_accepted_by_its_own_door() -> None:
    link = sign_link_token(SECRET, purpose="update_card", subject="cus_A", expires_at=int(time.time()) + 60)
    with pytest.raises(InvalidSession, match="update_card"):
        verify_token(KEYS, link)
    assert verify_token(KEYS, link, purposes=("update_card",)).subject == "cus_A"


def test_given_request_when_reading_token_then_header_beats_cookie_and_query_only_when_allowed() -> None:
    assert token_from({"authorization": "Bearer abc"}, {COOKIE_NAME: "c"}) == "abc"
    assert token_from({}, {COOKIE_NAME: "c"}) == "c"
    assert token_from({}, {}, {"token": "q"}) == "q"
    assert token_from({}, {}) is None
