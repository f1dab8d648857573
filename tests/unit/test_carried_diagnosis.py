"""The executor reuses the diagnosis a request carries (the router's) while it is fresh and nothing
changed the customer's billing since; otherwise it computes one, tied to the contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import HealthStatus, RootCause, Tier
from schemas.messages import DiagnosisView
from tierline.actions import ActionContext, ActionExecutor
from tierline.settings import InfraSettings

pytestmark = pytest.mark.unit


class CountingDiagnostics:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    async def diagnose(self, customer_id: str, *, contact_id: str | None = None, cause: Any = None) -> Any:
        self.calls.append((customer_id, contact_id))
        return view(customer_id, datetime.now(UTC))


class LedgerPool:
    """``fetchval`` answers whether the ledger has an effect on the customer since a time."""

    def __init__(self, effect_at: datetime | None = None) -> None:
        self.effect_at = effect_at

    async def fetchval(self, sql: str, customer_id: str, since: datetime) -> Any:
        return 1 if self.effect_at is not None and self.effect_at >= since else None


def view(customer_id: str, computed_at: datetime | None) -> DiagnosisView:
    return DiagnosisView(
        customer_id=customer_id,
        status=HealthStatus.RED,
        root_cause=RootCause.CARD_EXPIRED,
        explanation="Your card expired.",
        computed_at=computed_at,
    )


def executor(pool: Any, diagnostics: Any) -> ActionExecutor:
    return ActionExecutor(
        pool=pool,
        broker=None,  # type: ignore[arg-type]
        settings=InfraSettings(stripe_api_base="http://127.0.0.1:1"),
        diagnostics=diagnostics,
        stripe=object(),
    )


CTX = ActionContext(
    contact_id="c-1",
    customer_id="cus_1",
    tier=Tier.TIER2,
    actor="ai",
    actor_id="planner",
    cause=None,  # type: ignore[arg-type]
)


async def test_given_a_fresh_carried_diagnosis_when_adopted_then_no_second_computation() -> None:
    diagnostics = CountingDiagnostics()
    ex = executor(LedgerPool(), diagnostics)
    carried = view("cus_1", datetime.now(UTC) - timedelta(seconds=2))
    assert await ex.adopt(CTX, carried)
    assert await ex.diagnosis(CTX) == carried
    assert diagnostics.calls == []


@pytest.mark.parametrize(
    ("carried", "effect_after"),
    [
        (view("cus_1", None), False),  # no time: cannot tell its age
        (view("cus_1", datetime.now(UTC) - timedelta(minutes=5)), False),  # too old
        (view("cus_other", datetime.now(UTC)), False),  # another customer's
        (view("cus_1", datetime.now(UTC) - timedelta(seconds=1)), True),  # an effect ran since
        (None, False),
    ],
)
async def test_given_an_untrustworthy_carried_diagnosis_when_adopted_then_one_is_computed_for_the_contact(
    carried: DiagnosisView | None, effect_after: bool
) -> None:
    diagnostics = CountingDiagnostics()
    ex = executor(LedgerPool(datetime.now(UTC) if effect_after else None), diagnostics)
    assert not await ex.adopt(CTX, carried)
    await ex.diagnosis(CTX)
    assert diagnostics.calls == [("cus_1", "c-1")]
