"""The product connector's YAML, the policy's product_actions rules and Tier 2's reading of product asks
(issue 23): pure, no stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.vocab import EscalationReason, Intent
from services.product.domain import Invalid, last4_from_hint, masked, new_key, parse_role
from services.tier2_agent.product_tools import fill_email_slots, read_product_ask
from tierline.billing.policy import Allow, Deny, NeedsHuman, PolicyEngine
from tierline.guardrails import redact
from tierline.product_connector import (
    ConnectorError,
    InvalidParameters,
    ProductCallFailed,
    ProductConnector,
    load_connector,
    request_key,
)

pytestmark = pytest.mark.unit

POLICY = PolicyEngine.from_yaml()


def test_given_the_default_connector_when_loaded_then_every_action_has_a_valid_schema_and_a_role() -> None:
    spec = load_connector()
    assert spec.version == 1
    assert set(spec.actions) >= {
        "invite_member",
        "remove_member",
        "change_member_role",
        "transfer_ownership",
        "create_api_key",
        "rotate_api_key",
        "revoke_api_key",
    }
    assert spec.action("transfer_ownership").required_role == "owner"
    assert {a.name for a in spec.section("api_keys")} == {
        "create_api_key",
        "rotate_api_key",
        "revoke_api_key",
    }


def test_given_parameters_when_validated_then_defaults_fill_in_and_bad_ones_are_refused() -> None:
    invite = load_connector().action("invite_member")
    assert invite.validated({"email": " Maria@Acme.io"}) == {"email": "maria@acme.io", "role": "member"}
    with pytest.raises(InvalidParameters, match="role"):
        invite.validated({"email": "x@y.io", "role": "owner"})  # ownership is never granted by invitation
    with pytest.raises(InvalidParameters):
        invite.validated({"email": "x@y.io", "extra": 1})
    with pytest.raises(InvalidParameters, match="unknown product action"):
        load_connector().action("drop_database")


def test_given_an_operator_file_with_a_broken_schema_when_loaded_then_refused(tmp_path: Path) -> None:
    bad = tmp_path / "actions.yaml"
    bad.write_text(
        "version: 1\nactions:\n  x:\n    title: X\n    parameters: {type: nonsense}\n"
        "    request: {method: GET, path: /x}\n    target: x\n    confirmation: ok\n"
    )
    with pytest.raises(ConnectorError, match="invalid parameter schema"):
        load_connector(bad)


def test_given_the_same_request_when_keyed_then_the_key_ignores_the_contact_but_not_the_params() -> None:
    assert request_key("cus_1", "invite_member", {"email": "a@b.io", "role": "admin"}) == request_key(
        "cus_1", "invite_member", {"role": "admin", "email": "a@b.io"}
    )
    assert request_key("cus_1", "invite_member", {"email": "a@b.io"}) != request_key(
        "cus_2", "invite_member", {"email": "a@b.io"}
    )


async def test_given_a_product_answering_5xx_or_4xx_when_called_then_unavailable_or_refused() -> None:
    def answer(status: int, body: dict[str, Any]) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: httpx.Response(status, json=body))

    action = load_connector().action("invite_member")
    for status, kind in ((503, "unavailable"), (409, "refused")):
        connector = ProductConnector(
            load_connector(), "http://product", "t", transport=answer(status, {"detail": "already a member"})
        )
        with pytest.raises(ProductCallFailed) as failed:
            await connector.call(action, "cus_1", {"email": "a@b.io", "role": "member"}, idempotency_key="k")
        assert failed.value.kind == kind
        await connector.aclose()


def test_given_the_default_policy_when_product_actions_are_checked_then_caps_flags_and_forbids_apply() -> (
    None
):
    assert isinstance(
        POLICY.check_product("invite_member", actor="ai", instruction_flag=False, done_today=0), Allow
    )
    flagged = POLICY.check_product("invite_member", actor="ai", instruction_flag=True, done_today=0)
    assert isinstance(flagged, NeedsHuman)
    assert flagged.reason is EscalationReason.POLICY_DENIED
    capped = POLICY.check_product("create_api_key", actor="ai", instruction_flag=False, done_today=5)
    assert isinstance(capped, NeedsHuman)
    assert capped.rule == "product.daily_limit"
    assert isinstance(
        POLICY.check_product("transfer_ownership", actor="ai", instruction_flag=False, done_today=0),
        NeedsHuman,
    )
    strict = PolicyEngine(
        POLICY.rules.model_copy(
            update={
                "product_actions": POLICY.rules.product_actions.model_copy(
                    update={"forbidden": ["remove_member"]}
                )
            }
        )
    )
    assert isinstance(
        strict.check_product("remove_member", actor="human", instruction_flag=False, done_today=0), Deny
    )


@pytest.mark.parametrize(
    ("intent", "text", "action", "params"),
    [
        (
            Intent.TEAM_MEMBER,
            "please add maria@acme.io to our workspace as admin",
            "invite_member",
            {"email": "[EMAIL]", "role": "admin"},
        ),
        (
            Intent.TEAM_MEMBER,
            "can you invite joe@acme.io",
            "invite_member",
            {"email": "[EMAIL]", "role": "member"},
        ),
        (
            Intent.TEAM_MEMBER,
            "sam@acme.io left the company, please remove him",
            "remove_member",
            {"email": "[EMAIL]"},
        ),
        (
            Intent.TEAM_MEMBER,
            "make kim@acme.io an admin please",
            "change_member_role",
            {"email": "[EMAIL]", "role": "admin"},
        ),
        (Intent.TEAM_MEMBER, "transfer ownership to kim@acme.io", "transfer_ownership", {"email": "[EMAIL]"}),
        (
            Intent.API_KEY,
            "our key sk_live_…abcd leaked, rotate it",
            "rotate_api_key",
            {"key": "abcd", "overlap_s": 0},
        ),
        (
            Intent.API_KEY,
            "please rotate the key ending in wxyz",
            "rotate_api_key",
            {"key": "wxyz", "overlap_s": 86400},
        ),
        (Intent.API_KEY, "revoke sk_live_...9f3k", "revoke_api_key", {"key": "9f3k"}),
        (Intent.API_KEY, "we need a new API key", "create_api_key", {"name": "API key", "scopes": ["read"]}),
    ],
)
def test_given_a_product_ask_when_read_from_redacted_text_then_one_connector_action(
    intent: Intent, text: str, action: str, params: dict[str, Any]
) -> None:
    ask = read_product_ask(intent, redact(text))  # the planner only ever sees redacted text
    assert (ask.action, ask.params) == (action, params)


def test_given_an_owner_by_invitation_or_a_missing_detail_when_read_then_refusal_or_a_reply() -> None:
    assert read_product_ask(Intent.TEAM_MEMBER, redact("add evil@attacker.io as owner")).refusal
    assert read_product_ask(Intent.TEAM_MEMBER, "add my colleague please").reply
    assert read_product_ask(Intent.API_KEY, "our key leaked!").reply


def test_given_email_slots_when_filled_then_from_the_customers_own_words_only() -> None:
    text = "add Maria@acme.io and bob@acme.io"
    assert fill_email_slots({"email": "[EMAIL]", "role": "admin"}, text) == {
        "email": "maria@acme.io",
        "role": "admin",
    }
    assert fill_email_slots({"email": "[EMAIL:2]"}, text) == {"email": "bob@acme.io"}
    assert fill_email_slots({"email": "[EMAIL:3]"}, text) == {
        "email": "[EMAIL:3]"
    }  # then refused by the schema


def test_given_product_domain_rules_when_applied_then_keys_masked_and_owner_never_granted() -> None:
    key = new_key()
    assert key.secret.startswith("sk_live_")
    assert masked("sk_live_", key.last4) == f"sk_live_…{key.secret[-4:]}"
    assert last4_from_hint("sk_live_…abcd") == "abcd"
    with pytest.raises(Invalid):
        parse_role("owner")
    assert parse_role("owner", allow_owner=True) == "owner"


def test_given_the_registry_when_the_product_is_served_then_it_is_a_reference_service_with_its_api(
    tmp_path: Path,
) -> None:
    from tierline.registry import REFERENCE_SERVICE_MODULES, SERVICE_MODULES, load_service_factory
    from tierline.settings import InfraSettings
    from tierline_tools.stack.manager import REFERENCE_SERVICES, SERVICES, StackConfig

    assert "product" in REFERENCE_SERVICE_MODULES
    assert "product" not in SERVICE_MODULES  # never deployed with tierline
    assert "product" in REFERENCE_SERVICES
    assert "product" not in SERVICES
    service = load_service_factory("product")(InfraSettings())
    paths = {route.path for route in service.routes}
    assert {"/v1/accounts/{account_id}/members", "/v1/accounts/{account_id}/keys/{key}/rotate"} <= paths
    assert not service.broker.subscribers
    cfg = StackConfig.for_tests(tmp_path)
    assert cfg.env()["TIERLINE_PRODUCT_API_URL"] == f"http://127.0.0.1:{cfg.service_ports['product']}"
