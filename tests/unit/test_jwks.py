"""The JWKS verifier (tierline/jwks.py) and the two doors that use it, against a locally generated key set
served from a loopback JWKS endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.tier1_selfheal.auth import CustomerKeys, InvalidSession, ProductTokens, verify_token
from services.tier3_handoff.auth import InvalidAgentToken, agent_verifier, issue_agent_token
from services.tier3_handoff.settings import Tier3Settings
from tierline.jwks import JwksKeys, JwksTokenRefused, JwksVerifier
from tierline.tokens import KeySet, issue_customer_token

ISSUER = "https://auth.product.test/"
AUDIENCE = "tierline-portal"


@dataclass
class IdentityProvider:
    """Key pairs and a loopback JWKS endpoint serving their public halves."""

    keys: dict[str, Any] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    hits: int = 0
    url: str = ""

    def add(self, kid: str, kind: str = "RS256", *, publish: bool = True) -> None:
        self.keys[kid] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            key = self.keys[kid]
            algo = (
                jwt.algorithms.RSAAlgorithm
                if isinstance(key, rsa.RSAPrivateKey)
                else jwt.algorithms.ECAlgorithm
            )
            jwk = json.loads(algo.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def token(self, kid: str, *, alg: str | None = None, **claims: Any) -> str:
        key = self.keys[kid]
        alg = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, "sub": "user_1", **claims}
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid}
        )

    def public_pem(self, kid: str) -> bytes:
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(  # type: ignore[no-any-return]
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@contextmanager
def serving(provider: IdentityProvider) -> Iterator[IdentityProvider]:
    """Serve the provider's JWKS on a loopback port (a thread: sync verifiers fetch it from any loop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            provider.hits += 1
            body = json.dumps(provider.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    provider.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.add("rsa-1")
    provider.add("ec-1", "ES256")
    with serving(provider) as served:
        yield served


def verifier(idp: IdentityProvider, **kw: Any) -> JwksVerifier:
    return JwksVerifier(JwksKeys(idp.url, min_refresh_s=kw.pop("min_refresh_s", 0.0)), ISSUER, AUDIENCE, **kw)


def _hs256_with_public_key(idp: IdentityProvider) -> str:
    """Algorithm confusion: an HMAC token keyed with the (public) RSA key, naming the RSA kid."""
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "sub": "x"}).encode())
    sig = hmac.new(idp.public_pem("rsa-1"), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def _alg_none(idp: IdentityProvider) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "sub": "x"},
        None,
        algorithm="none",
        headers={"kid": "rsa-1"},
    )


REFUSED: dict[str, Callable[[IdentityProvider], str]] = {
    "wrong issuer": lambda p: p.token("rsa-1", iss="https://evil.test/"),
    "wrong audience": lambda p: p.token("rsa-1", aud="another-app"),
    "no audience": lambda p: p.token("rsa-1", aud=None),
    "expired beyond the skew": lambda p: p.token("rsa-1", exp=int(time.time()) - 120),
    "no expiry": lambda p: p.token("rsa-1", exp=None),
    "unknown kid": lambda p: (p.add("rsa-unpublished", publish=False), p.token("rsa-unpublished"))[1],
    "alg none": _alg_none,
    "HS256 keyed with the public key": _hs256_with_public_key,
    "RS256 header on the EC key": lambda p: p.token("ec-1", alg="ES256").replace(
        p.token("ec-1", alg="ES256").split(".")[0],
        jwt.utils.base64url_encode(json.dumps({"alg": "RS256", "kid": "ec-1"}).encode()).decode(),
    ),
    "signed by a key that is not the one named": lambda p: (
        p.add("rsa-other", publish=False),
        jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600},
            p.keys["rsa-other"],
            algorithm="RS256",
            headers={"kid": "rsa-1"},
        ),
    )[1],
    "not a JWT": lambda p: "not-a-token",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_given_a_bad_token_when_verified_then_refused(idp: IdentityProvider, case: str) -> None:
    # Given the provider's key set, When a token of the kind named is verified, Then it is refused
    with pytest.raises(JwksTokenRefused):
        verifier(idp).verify(REFUSED[case](idp))


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_given_a_valid_rs256_or_es256_token_when_verified_then_its_claims(
    idp: IdentityProvider, kid: str
) -> None:
    claims = verifier(idp).verify(idp.token(kid, stripe_customer_id="cus_A1"))
    assert claims["stripe_customer_id"] == "cus_A1"


def test_given_a_token_expired_within_the_skew_when_verified_then_accepted(idp: IdentityProvider) -> None:
    assert verifier(idp, leeway_s=30).verify(idp.token("rsa-1", exp=int(time.time()) - 5))["sub"] == "user_1"


def test_given_a_rotated_key_when_a_token_names_it_then_the_set_is_fetched_again(
    idp: IdentityProvider,
) -> None:
    # Given a verifier that has cached the provider's keys
    v = verifier(idp)
    v.verify(idp.token("rsa-1"))
    fetched = idp.hits
    # When the provider publishes a new key and a token names it
    idp.add("rsa-2")
    claims = v.verify(idp.token("rsa-2"))
    # Then the key set was fetched once more and the token accepted; a known kid needs no fetch
    assert claims["iss"] == ISSUER
    assert idp.hits == fetched + 1
    v.verify(idp.token("rsa-1"))
    assert idp.hits == fetched + 1


def test_given_many_unknown_kids_when_verified_then_the_provider_is_asked_at_most_once_per_interval(
    idp: IdentityProvider,
) -> None:
    v = verifier(idp, min_refresh_s=60.0)
    v.verify(idp.token("rsa-1"))
    for n in range(20):
        idp.add(f"made-up-{n}", publish=False)
        with pytest.raises(JwksTokenRefused):
            v.verify(idp.token(f"made-up-{n}"))
    assert idp.hits == 1


def test_given_an_unreachable_jwks_when_verified_then_refused_not_crashed(idp: IdentityProvider) -> None:
    v = JwksVerifier(JwksKeys("http://127.0.0.1:9/jwks.json", timeout_s=0.5), ISSUER, AUDIENCE)
    with pytest.raises(JwksTokenRefused):
        v.verify(idp.token("rsa-1"))


# ----------------------------------------------------------------------------- the customer door (tier 1)
def _customer_keys(idp: IdentityProvider) -> CustomerKeys:
    own = KeySet.single("customer", "k1", "s" * 40)
    return CustomerKeys(own, "l" * 40, ProductTokens(verifier(idp), "stripe_customer_id"))


def test_given_a_product_token_for_customer_a_when_verified_then_the_session_is_a_and_never_b(
    idp: IdentityProvider,
) -> None:
    keys = _customer_keys(idp)
    claims = verify_token(keys, idp.token("ec-1", stripe_customer_id="cus_A"))
    assert claims.subject == "cus_A"
    # the customer comes only from the signed claim: a sub naming another customer changes nothing
    assert verify_token(keys, idp.token("rsa-1", stripe_customer_id="cus_A", sub="cus_B")).subject == "cus_A"


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"stripe_customer_id": ""},
        {"stripe_customer_id": "cus_A; DROP"},
        {"stripe_customer_id": ["cus_A"]},
    ],
)
def test_given_a_product_token_without_a_customer_when_verified_then_401(
    idp: IdentityProvider, claims: dict[str, Any]
) -> None:
    with pytest.raises(InvalidSession):
        verify_token(_customer_keys(idp), idp.token("rsa-1", **claims))


def test_given_product_sign_in_on_when_tierline_session_is_used_then_it_still_works(
    idp: IdentityProvider,
) -> None:
    keys = _customer_keys(idp)
    own = issue_customer_token(keys.sessions, "cus_OWN", 600)
    assert verify_token(keys, own).subject == "cus_OWN"


def test_given_a_product_token_when_a_link_door_asks_for_a_link_then_refused(idp: IdentityProvider) -> None:
    with pytest.raises(InvalidSession):
        verify_token(
            _customer_keys(idp), idp.token("rsa-1", stripe_customer_id="cus_A"), purposes=("update_card",)
        )


def test_given_product_sign_in_off_when_a_product_token_comes_then_refused(idp: IdentityProvider) -> None:
    keys = CustomerKeys(KeySet.single("customer", "k1", "s" * 40), "l" * 40)
    with pytest.raises(InvalidSession):
        verify_token(keys, idp.token("rsa-1", stripe_customer_id="cus_A"))


# ----------------------------------------------------------------------------- the console (tier 3)
def _console(idp: IdentityProvider) -> Any:
    settings = Tier3Settings(oidc_jwks_url=idp.url, oidc_issuer=ISSUER, oidc_audience=AUDIENCE)
    return agent_verifier(KeySet.single("agent", "a1", "a" * 40), settings)


def test_given_an_idp_token_when_the_console_verifies_it_then_claims_map_to_agent_queues_and_role(
    idp: IdentityProvider,
) -> None:
    agent = _console(idp).verify(
        idp.token(
            "rsa-1",
            preferred_username="ana@acme.test",
            tierline_queues=["billing", "risk"],
            groups=["staff", "billing-approvers"],
        )
    )
    assert agent.agent_id == "ana@acme.test"
    assert agent.queues == {"billing", "risk"}
    assert agent.approver
    plain = _console(idp).verify(idp.token("ec-1", preferred_username="bo", tierline_queues="billing"))
    assert plain.queues == {"billing"}
    assert not plain.approver


@pytest.mark.parametrize(
    "claims",
    [
        {"preferred_username": "ana"},  # no queues
        {"preferred_username": "ana", "tierline_queues": [], "groups": ["billing-approvers"]},
        {"tierline_queues": ["billing"], "aud": "another-app"},
        {"tierline_queues": ["billing"], "iss": "https://evil.test/"},
    ],
)
def test_given_a_bad_idp_token_when_the_console_verifies_it_then_401(
    idp: IdentityProvider, claims: dict[str, Any]
) -> None:
    with pytest.raises(InvalidAgentToken):
        _console(idp).verify(idp.token("rsa-1", **claims))


def test_given_idp_sign_in_on_when_a_tierline_agent_token_is_used_then_it_still_works(
    idp: IdentityProvider,
) -> None:
    keys = KeySet.single("agent", "a1", "a" * 40)
    verifier_ = agent_verifier(
        keys, Tier3Settings(oidc_jwks_url=idp.url, oidc_issuer=ISSUER, oidc_audience=AUDIENCE)
    )
    assert verifier_.verify(issue_agent_token(keys, "ana", ["billing"])).agent_id == "ana"
