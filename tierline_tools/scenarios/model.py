"""The scenario format (shared/spec/scenarios.md): one world, one trigger, what should happen."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas import Action, EscalationReason, Tier


class ContactTrigger(BaseModel):
    model_config = ConfigDict(extra="allow")
    channel: str = "chat"
    text: str


class Expect(BaseModel):
    model_config = ConfigDict(extra="allow")
    resolved_by: Tier | list[Tier] | None = None
    actions_include: list[Action] = Field(default_factory=list)
    actions_exclude: list[Action] = Field(default_factory=list)
    refund_usd_max: float | None = None
    escalation_reason_any: list[EscalationReason] = Field(default_factory=list)

    def tiers(self) -> list[Tier]:
        if self.resolved_by is None:
            return []
        return self.resolved_by if isinstance(self.resolved_by, list) else [self.resolved_by]


class Scenario(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    world: dict[str, Any] = Field(default_factory=dict)
    contact: ContactTrigger | None = None
    selfheal: dict[str, Any] | None = None
    stripe_event: dict[str, Any] | None = None
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="after")
    def _one_trigger(self) -> Scenario:
        n = sum(x is not None for x in (self.contact, self.selfheal, self.stripe_event))
        if n != 1:
            raise ValueError(f"scenario {self.id}: exactly one of contact/selfheal/stripe_event, got {n}")
        return self

    @property
    def trigger(self) -> str:
        return "contact" if self.contact else "selfheal" if self.selfheal else "stripe_event"


class ScenarioResult(BaseModel):
    """What actually happened (the runner reports facts, not verdicts)."""

    id: str
    resolved_by: Tier | None = None
    actions: list[str] = Field(default_factory=list)
    refund_usd: float = 0.0
    escalation_reason: str | None = None
    contact_id: str | None = None
    latency_ms: int | None = None
    error: str | None = None


def check(scenario: Scenario, result: ScenarioResult) -> list[str]:
    """The expectations that do not hold (empty = pass)."""
    e = scenario.expect
    failures: list[str] = []
    if result.resolved_by is None:
        failures.append("dead end: no terminal outcome")
        return failures
    tiers = e.tiers()
    if tiers and result.resolved_by not in tiers:
        failures.append(f"resolved_by {result.resolved_by.value}, expected {[t.value for t in tiers]}")
    for action in e.actions_include:
        if action.value not in result.actions:
            failures.append(f"missing action {action.value}")
    for action in e.actions_exclude:
        if action.value in result.actions:
            failures.append(f"excluded action happened: {action.value}")
    if e.refund_usd_max is not None and result.refund_usd > e.refund_usd_max + 1e-9:
        failures.append(f"refunded ${result.refund_usd:.2f} > max ${e.refund_usd_max:.2f}")
    if e.escalation_reason_any and result.escalation_reason not in {r.value for r in e.escalation_reason_any}:
        failures.append(
            f"escalation_reason {result.escalation_reason}, expected one of "
            f"{[r.value for r in e.escalation_reason_any]}"
        )
    return failures


def policy_violations(scenario: Scenario, result: ScenarioResult) -> list[str]:
    e = scenario.expect
    out = [f"excluded action {a.value}" for a in e.actions_exclude if a.value in result.actions]
    if e.refund_usd_max is not None and result.refund_usd > e.refund_usd_max + 1e-9:
        out.append(f"refund ${result.refund_usd:.2f} over ${e.refund_usd_max:.2f}")
    return out


def summarize(scenarios: list[Scenario], results: list[ScenarioResult]) -> dict[str, Any]:
    by_id = {s.id: s for s in scenarios}
    passed = 0
    tier_mix: dict[str, int] = {}
    violations: dict[str, list[str]] = {}
    dead_ends: list[str] = []
    failures: dict[str, list[str]] = {}
    for r in results:
        s = by_id[r.id]
        f = check(s, r)
        if not f:
            passed += 1
        else:
            failures[r.id] = f
        key = r.resolved_by.value if r.resolved_by else "dead_end"
        tier_mix[key] = tier_mix.get(key, 0) + 1
        if r.resolved_by is None:
            dead_ends.append(r.id)
        v = policy_violations(s, r)
        if v:
            violations[r.id] = v
    total = len(results)
    return {
        "scenarios": total,
        "passed": passed,
        "failed": total - passed,
        "pass_rate": round(passed / total, 4) if total else 0.0,
        "tier_mix": dict(sorted(tier_mix.items())),
        "policy_violations": violations,
        "dead_ends": dead_ends,
        "failures": failures,
    }
