"""The diagnostics API's HTTP contract: the diagnosis is ``schemas.messages.DiagnosisView``; usage is here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UsageQuery(BaseModel):
    days: int = Field(default=60, description="days of daily figures (clamped to 1..366)")


class UsageMetric(_Out):
    metric: str
    period_units: float
    last_30d: float
    prev_30d: float
    forecast: float
    period_cost_usd: float


class UsageDay(_Out):
    metric: str
    day: str = Field(description="YYYY-MM-DD")
    units: float
    cost_usd: float
    events: int


class UsageReport(_Out):
    """Usage by metric (period, last 30 days vs the 30 before, forecast) and by day."""

    customer_id: str
    period_start: str | None
    period_end: str | None
    metrics: list[UsageMetric]
    events: int
    daily: list[UsageDay]
