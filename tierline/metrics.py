"""Prometheus metrics: one registry for the whole process, served at ``/metrics`` on each service's port.

Counted at the few central points every service goes through, not in handlers:

- the broker middleware (:class:`tierline.messaging.DeadLetterRouter`) and :func:`tierline.messaging.publish`:
  messages consumed, produced and dead-lettered per topic, handler latency;
- :class:`tierline.actions.ActionExecutor`: actions by type and result, policy decisions by rule,
  refunds in count and dollars;
- :func:`tierline.pipeline.escalate` / ``record_outcome``: escalations by reason, outcomes by tier;
- the Stripe adapter and the LLM client: call latency, errors, tokens and cost;
- :func:`tierline.conversations.say`: first-response time (contact received → first message back).

Consumer lag (end offset − committed offset, per group and partition) is read from the process's own
aiokafka consumers when ``/metrics`` is scraped, at most once every ``LAG_REFRESH_S`` seconds: no loop.

Every name here is what ``deploy/grafana/tierline.json`` and ``deploy/prometheus/alerts.yml`` query
(``tests/unit/test_metrics.py`` keeps them in step).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from faststream._internal.middlewares import BaseMiddleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = structlog.get_logger(__name__)

disable_created_metrics()  # no `_created` twin of every counter: half the series, nothing queries them

#: The process's one registry (not the library's global one: nothing else leaks into it).
REGISTRY = CollectorRegistry(auto_describe=True)

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
_RESPONSE = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)

# --------------------------------------------------------------------------------------- messaging
MESSAGES_CONSUMED = Counter(
    "tierline_messages_consumed_total",
    "Kafka records handed to a handler (a redelivery counts again)",
    ["service", "topic"],
    registry=REGISTRY,
)
MESSAGES_PRODUCED = Counter(
    "tierline_messages_produced_total",
    "Messages the broker acknowledged, per topic",
    ["topic"],
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    "tierline_messages_dead_lettered_total",
    "Records a consumer could not process, sent to the dead-letter topic",
    ["service", "topic", "error_kind"],
    registry=REGISTRY,
)
HANDLER_SECONDS = Histogram(
    "tierline_handler_duration_seconds",
    "Time a handler took for one record or batch; result: ok or error (retried, then dead-lettered)",
    ["service", "topic", "result"],
    buckets=_FAST,
    registry=REGISTRY,
)

# ----------------------------------------------------------------------------------- the pipeline
ACTIONS = Counter(
    "tierline_actions_total",
    "Actions the executor ran; result: succeeded, failed, denied, needs_human",
    ["action", "result", "tier"],
    registry=REGISTRY,
)
POLICY_DECISIONS = Counter(
    "tierline_policy_decisions_total",
    "Policy verdicts, per rule that decided them",
    ["action", "verdict", "rule"],
    registry=REGISTRY,
)
REFUNDS = Counter(
    "tierline_refunds_total", "Refunds made (new ones, not replays)", ["tier"], registry=REGISTRY
)
REFUNDED_USD = Counter(
    "tierline_refunds_usd_total", "Dollars refunded (new refunds, not replays)", ["tier"], registry=REGISTRY
)
ESCALATIONS = Counter(
    "tierline_escalations_total",
    "Contacts handed to a person, per reason",
    ["reason", "opened_by"],
    registry=REGISTRY,
)
OUTCOMES = Counter(
    "tierline_contact_outcomes_total",
    "Contacts closed (their one terminal outcome), per tier that resolved them",
    ["resolved_by"],
    registry=REGISTRY,
)
FIRST_RESPONSE_SECONDS = Histogram(
    "tierline_first_response_seconds",
    "From a contact's message to the first message back to the customer, per kind of that message",
    ["kind"],
    buckets=_RESPONSE,
    registry=REGISTRY,
)
AUDIT_CHAIN_BROKEN = Gauge(
    "tierline_audit_chain_broken",
    "1 when the last verification of the audit hash chain found a broken link, else 0",
    registry=REGISTRY,
)
AUDIT_CHAIN_CHECKED = Gauge(
    "tierline_audit_chain_verified_timestamp_seconds",
    "When the audit hash chain was last verified (unix time)",
    registry=REGISTRY,
)

# ------------------------------------------------------------------------------- outside services
STRIPE_SECONDS = Histogram(
    "tierline_stripe_call_duration_seconds",
    "One Stripe API call through the adapter, retries included",
    ["operation"],
    buckets=_FAST,
    registry=REGISTRY,
)
STRIPE_ERRORS = Counter(
    "tierline_stripe_call_errors_total",
    "Stripe calls that ended in an error, per kind (unavailable, auth, not_found, invalid, card_declined)",
    ["operation", "error"],
    registry=REGISTRY,
)
LLM_SECONDS = Histogram(
    "tierline_llm_call_duration_seconds",
    "One model call (chat completion), retries included",
    ["model"],
    buckets=_SLOW,
    registry=REGISTRY,
)
LLM_ERRORS = Counter(
    "tierline_llm_call_errors_total",
    "Model calls that failed after retries",
    ["model", "error"],
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "tierline_llm_tokens_total",
    "Tokens the model reported, per kind (prompt, completion)",
    ["model", "kind"],
    registry=REGISTRY,
)
LLM_COST_USD = Counter(
    "tierline_llm_cost_usd_total",
    "Model spend at the published list price (models without a known price are not counted)",
    ["model"],
    registry=REGISTRY,
)

#: USD per million (prompt, completion) tokens, OpenAI's published list prices.
LLM_PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}

_ID_IN_PATH = re.compile(r"/[a-z]{2,5}_[A-Za-z0-9_]+")


def stripe_operation(op: str) -> str:
    """A bounded label for an adapter operation: ids in raw paths become ``{id}``."""
    return _ID_IN_PATH.sub("/{id}", op)[:80]


def llm_cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    price = LLM_PRICES_PER_MTOK.get(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def observe_llm_call(model: str, seconds: float, usage: Any) -> None:
    """Latency, tokens and cost of one successful model call (``usage``: the completion's, or None)."""
    LLM_SECONDS.labels(model).observe(seconds)
    if usage is None:
        return
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    LLM_TOKENS.labels(model, "prompt").inc(prompt)
    LLM_TOKENS.labels(model, "completion").inc(completion)
    cost = llm_cost_usd(model, prompt, completion)
    if cost is not None:
        LLM_COST_USD.labels(model).inc(cost)


def observe_action(action: str, tier: str, result: str, amount_usd: float, *, replayed: bool) -> None:
    """An action's result; a refund that succeeded now (not a replay) counts in refunds and dollars."""
    ACTIONS.labels(action, result, tier).inc()
    if action == "refund" and result == "succeeded" and not replayed:
        REFUNDS.labels(tier).inc()
        REFUNDED_USD.labels(tier).inc(max(0.0, amount_usd))


async def observe_first_response(conn: Any, conversation_id: str, contact_id: str, kind: str) -> None:
    """Called when a turn to the customer was stored: if it is the contact's first, observe the time
    since the customer's message. Never fails the caller (a metric is not worth a redelivery)."""
    try:
        row = await conn.fetchrow(
            """SELECT min(created_at) FILTER (WHERE role = 'customer') AS asked,
                      count(*) FILTER (WHERE role <> 'customer') AS answers
                 FROM conversation_turns WHERE conversation_id=$1 AND contact_id=$2""",
            conversation_id,
            contact_id,
        )
        if row is None or row["asked"] is None or row["answers"] != 1:
            return
        asked: datetime = row["asked"]
        seconds = (datetime.now(UTC) - asked).total_seconds()
        FIRST_RESPONSE_SECONDS.labels(kind).observe(max(0.0, seconds))
    except Exception as exc:  # noqa: BLE001 - a metric never fails the turn
        log.warning("metrics.first_response_failed", contact_id=contact_id, error=type(exc).__name__)


# ----------------------------------------------------------------------------------- consumer lag
#: The least time between two lag reads (a scrape every second does not query the broker every second).
LAG_REFRESH_S = 5.0


class ConsumerLag(Collector):
    """``tierline_consumer_lag``: end offset − committed offset per group, topic and partition, for the
    partitions this process's consumers hold. Read from the brokers registered with :meth:`watch` on
    :meth:`refresh` (called by the ``/metrics`` route), at most once every ``min_interval_s``."""

    def __init__(
        self, min_interval_s: float = LAG_REFRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._brokers: dict[str, Any] = {}
        self._values: dict[tuple[str, str, int], int] = {}
        self._last: float | None = None
        self._lock = asyncio.Lock()

    def watch(self, service: str, broker: Any) -> None:
        self._brokers[service] = broker

    def unwatch(self, service: str) -> None:
        self._brokers.pop(service, None)
        self._last = None

    async def refresh(self, timeout_s: float = 5.0) -> None:
        async with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.min_interval_s:
                return
            self._last = now
            try:
                self._values = await asyncio.wait_for(self._read(), timeout_s)
            except Exception as exc:  # noqa: BLE001 - the previous figures stay; the scrape still answers
                log.warning("metrics.lag_read_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _read(self) -> dict[tuple[str, str, int], int]:
        values: dict[tuple[str, str, int], int] = {}
        for broker in list(self._brokers.values()):
            for sub in list(getattr(broker, "subscribers", [])):
                for consumer in _consumers(sub):
                    group = getattr(consumer, "_group_id", None) or getattr(sub, "group_id", None)
                    tps = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
                    if not group or not tps:
                        continue
                    ends = await consumer.end_offsets(tps)
                    starts: dict[Any, int] | None = None
                    for tp in tps:
                        committed = await consumer.committed(tp)
                        if committed is None:  # nothing committed yet: the group starts at the earliest
                            starts = starts if starts is not None else await consumer.beginning_offsets(tps)
                            committed = starts.get(tp, 0)
                        values[(group, tp.topic, tp.partition)] = max(
                            0, int(ends.get(tp, 0)) - int(committed)
                        )
        return values

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "tierline_consumer_lag",
            "Records not yet committed by the group: end offset minus committed offset",
            labels=["group", "topic", "partition"],
        )
        for (group, topic, partition), lag in sorted(self._values.items()):
            family.add_metric([group, topic, str(partition)], lag)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("tierline_consumer_lag", "", labels=["group", "topic", "partition"])


def _consumers(sub: Any) -> Iterator[Any]:
    """A FastStream subscriber's aiokafka consumers: one, or one per worker (``max_workers``)."""
    group = getattr(sub, "consumer_subgroup", None)
    if group:
        yield from (c for c in group if c is not None)
    elif getattr(sub, "consumer", None) is not None:
        yield sub.consumer


CONSUMER_LAG = ConsumerLag()
REGISTRY.register(CONSUMER_LAG)


def metric_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every series name the registry exports (counters' ``_total``, histograms' ``_bucket`` ...)."""
    names: set[str] = set()
    for metric in registry.collect():
        names.update(sample.name for sample in metric.samples)
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
        elif metric.type == "histogram":
            names.update(f"{metric.name}{s}" for s in ("_bucket", "_count", "_sum"))
        else:
            names.add(metric.name)
    return names


async def metrics_response(request: Request) -> Response:
    """``GET /metrics``: the registry in Prometheus' text format (consumer lag read first, if due)."""
    await CONSUMER_LAG.refresh()
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def metrics_middleware(service: str) -> type[BaseMiddleware]:
    """Innermost broker middleware: records consumed, and the handler's own time and result (ok or
    error; the dead-letter middleware outside it decides between a retry and a dead letter)."""

    class MetricsMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            raw = msg.raw_message
            records = [r for r in raw if r is not None] if isinstance(raw, tuple | list) else [raw]
            topic = str(getattr(records[0], "topic", "?")) if records and records[0] is not None else "?"
            MESSAGES_CONSUMED.labels(service, topic).inc(len(records))
            started = time.perf_counter()
            result = "error"
            try:
                value = await call_next(msg)
                result = "ok"
                return value
            finally:
                HANDLER_SECONDS.labels(service, topic, result).observe(time.perf_counter() - started)

    return MetricsMiddleware


def metrics_app() -> Starlette:
    """The HTTP app of a service without an HTTP door: ``/metrics`` alone (its metrics port)."""
    return Starlette(routes=[Route("/metrics", metrics_response)])
