"""Prometheus metrics (tierline/metrics.py): what the central points count, consumer lag read on scrape at
most once per interval, /metrics on a service's HTTP port or, without one, on its metrics port.

The registry is the process's own and other tests move it too: every assertion compares before and after.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from faststream.kafka import TestKafkaBroker
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from tierline import metrics
from tierline.messaging import DeadLetterRouter, make_broker
from tierline.runtime import Service
from tierline.settings import InfraSettings
from tierline.stripe_adapter import StripeActions, StripeAuthFailed, StripeNotFound

pytestmark = pytest.mark.unit


def value(name: str, **labels: str) -> float:
    """The current value of one sample of the process registry (0 when it has none yet)."""
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return found or 0.0


class Ping(BaseModel):
    n: int


# ------------------------------------------------------------------------------------ the broker
async def test_given_a_broker_when_records_are_handled_ok_failed_and_poison_then_each_is_counted() -> None:
    # Given a service's broker (dead letters + metrics middlewares) with one handler that works and one
    # that always fails
    dead_letters = DeadLetterRouter("metrics_svc", backoff_s=0)
    broker = make_broker("127.0.0.1:9", "metrics_svc", dead_letters)

    @broker.subscriber("metrics.ok.v1", group_id="g.ok")
    async def ok(msg: Ping) -> None:
        return None

    @broker.subscriber("metrics.bad.v1", group_id="g.bad")
    async def bad(msg: Ping) -> None:
        raise RuntimeError("boom")

    ok_before = value("tierline_messages_consumed_total", service="metrics_svc", topic="metrics.ok.v1")
    # When one good record, one that is not JSON, and one whose handler fails 3 times arrive
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b'{"n": 1}', topic="metrics.ok.v1")
        await test_broker.publish(b"not json", topic="metrics.ok.v1")
        for _ in range(3):
            try:
                await test_broker.publish(b'{"n": 2}', topic="metrics.bad.v1")
            except RuntimeError:
                pass  # a retry: the dead-letter middleware raises it back for redelivery
    # Then consumed, handler time by result and dead letters by kind moved
    assert (
        value("tierline_messages_consumed_total", service="metrics_svc", topic="metrics.ok.v1")
        == ok_before + 2
    )
    assert value("tierline_messages_consumed_total", service="metrics_svc", topic="metrics.bad.v1") == 3
    labels = {"service": "metrics_svc", "topic": "metrics.ok.v1"}
    assert value("tierline_handler_duration_seconds_count", **labels, result="ok") == 1
    assert value("tierline_handler_duration_seconds_count", **labels, result="error") == 1  # the poison one
    bad_labels = {"service": "metrics_svc", "topic": "metrics.bad.v1"}
    assert value("tierline_handler_duration_seconds_count", **bad_labels, result="error") == 3
    assert value("tierline_messages_dead_lettered_total", **bad_labels, error_kind="handler_error") == 1
    assert value("tierline_messages_dead_lettered_total", **labels, error_kind="invalid_message") == 1
    # and both dead-letter records were produced (acknowledged) on the dead-letter topic
    assert value("tierline_messages_produced_total", topic="deadletter.message.recorded.v1") >= 2


# ----------------------------------------------------------------------------- actions and calls
def test_given_a_new_refund_and_a_replayed_one_when_observed_then_only_the_new_one_counts_dollars() -> None:
    before = (
        value("tierline_refunds_total", tier="tier2"),
        value("tierline_refunds_usd_total", tier="tier2"),
    )
    acts = value("tierline_actions_total", action="refund", result="succeeded", tier="tier2")
    metrics.observe_action("refund", "tier2", "succeeded", 42.5, replayed=False)
    metrics.observe_action("refund", "tier2", "succeeded", 42.5, replayed=True)
    metrics.observe_action("refund", "tier2", "denied", 900.0, replayed=False)
    assert value("tierline_refunds_total", tier="tier2") == before[0] + 1
    assert value("tierline_refunds_usd_total", tier="tier2") == pytest.approx(before[1] + 42.5)
    assert value("tierline_actions_total", action="refund", result="succeeded", tier="tier2") == acts + 2


def test_given_raw_paths_with_ids_when_labelled_then_the_ids_are_gone() -> None:
    assert metrics.stripe_operation("GET /v1/invoices/in_1AbC/lines") == "GET /v1/invoices/{id}/lines"
    assert metrics.stripe_operation("POST /v1/customers/cus_9x") == "POST /v1/customers/{id}"
    assert metrics.stripe_operation("refund.create") == "refund.create"


def test_given_a_model_call_when_observed_then_tokens_and_list_price_cost_are_counted() -> None:
    @dataclass
    class Usage:
        prompt_tokens: int = 1_000_000
        completion_tokens: int = 100_000

    cost = value("tierline_llm_cost_usd_total", model="gpt-4o-mini")
    prompt = value("tierline_llm_tokens_total", model="gpt-4o-mini", kind="prompt")
    metrics.observe_llm_call("gpt-4o-mini", 0.8, Usage())
    metrics.observe_llm_call("some-local-model", 0.8, Usage())  # no known price: tokens, no cost
    assert value("tierline_llm_tokens_total", model="gpt-4o-mini", kind="prompt") == prompt + 1_000_000
    assert value("tierline_llm_cost_usd_total", model="gpt-4o-mini") == pytest.approx(cost + 0.15 + 0.06)
    assert value("tierline_llm_cost_usd_total", model="some-local-model") == 0
    assert value("tierline_llm_tokens_total", model="some-local-model", kind="completion") >= 100_000


async def test_given_stripe_refusing_the_key_and_a_missing_object_when_called_then_errors_by_kind() -> None:
    adapter = StripeActions(InfraSettings(stripe_api_base="http://127.0.0.1:9"), max_attempts=1)
    op_auth, op_missing = "metrics_test.auth", "metrics_test.missing"

    async def refused() -> None:
        raise stripe.AuthenticationError("Invalid API Key provided")

    async def missing() -> None:
        raise stripe.InvalidRequestError("No such invoice", "id", http_status=404)

    with pytest.raises(StripeAuthFailed):
        await adapter.call(refused, op=op_auth)
    with pytest.raises(StripeNotFound):
        await adapter.call(missing, op=op_missing)
    assert value("tierline_stripe_call_errors_total", operation=op_auth, error="auth") == 1
    assert value("tierline_stripe_call_errors_total", operation=op_missing, error="not_found") == 1
    assert value("tierline_stripe_call_duration_seconds_count", operation=op_auth) == 1


# ----------------------------------------------------------------------------------- consumer lag
@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class FakeConsumer:
    group: str
    ends: dict[TP, int]
    committed_at: dict[TP, int | None]
    reads: int = 0

    @property
    def _group_id(self) -> str:
        return self.group

    def assignment(self) -> set[TP]:
        return set(self.ends)

    async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        self.reads += 1
        return {tp: self.ends[tp] for tp in tps}

    async def committed(self, tp: TP) -> int | None:
        return self.committed_at[tp]

    async def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return dict.fromkeys(tps, 3)


@dataclass
class FakeSubscriber:
    consumer_subgroup: list[FakeConsumer]


@dataclass
class FakeBroker:
    subscribers: list[FakeSubscriber] = field(default_factory=list)


def lag_samples(lag: metrics.ConsumerLag) -> dict[tuple[str, str, str], float]:
    (family,) = list(lag.collect())
    return {(s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value for s in family.samples}


async def test_given_consumers_when_lag_refreshed_then_end_minus_committed_at_most_once_per_interval() -> (
    None
):
    # Given a service whose two workers hold two partitions, one never committed
    p0, p1 = TP("contact.received.v1", 0), TP("contact.received.v1", 1)
    workers = [
        FakeConsumer("tierline.router", {p0: 120}, {p0: 100}),
        FakeConsumer("tierline.router", {p1: 10}, {p1: None}),
    ]
    now = [1000.0]
    lag = metrics.ConsumerLag(min_interval_s=5.0, clock=lambda: now[0])
    lag.watch("router", FakeBroker([FakeSubscriber(workers)]))
    # When scraped
    await lag.refresh()
    # Then lag per group and partition (never committed: from the earliest offset)
    assert lag_samples(lag) == {
        ("tierline.router", "contact.received.v1", "0"): 20,
        ("tierline.router", "contact.received.v1", "1"): 7,
    }
    # When scraped again within the interval, the broker is not asked again; after it, it is
    workers[0].committed_at[p0] = 120
    await lag.refresh()
    assert [w.reads for w in workers] == [1, 1]
    assert lag_samples(lag)[("tierline.router", "contact.received.v1", "0")] == 20
    now[0] += 5.0
    await lag.refresh()
    assert [w.reads for w in workers] == [2, 2]
    assert lag_samples(lag)[("tierline.router", "contact.received.v1", "0")] == 0


async def test_given_a_broker_that_does_not_answer_when_lag_refreshed_then_last_figures_stay() -> None:
    class Hanging(FakeConsumer):
        async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    tp = TP("tier2.agent.requested.v1", 0)
    consumer = FakeConsumer("tierline.tier2_agent", {tp: 9}, {tp: 4})
    lag = metrics.ConsumerLag(min_interval_s=0)
    lag.watch("tier2_agent", FakeBroker([FakeSubscriber([consumer])]))
    await lag.refresh()
    lag.watch(
        "tier2_agent", FakeBroker([FakeSubscriber([Hanging("tierline.tier2_agent", {tp: 9}, {tp: 4})])])
    )
    await lag.refresh(timeout_s=0.05)
    assert lag_samples(lag) == {("tierline.tier2_agent", "tier2.agent.requested.v1", "0"): 5}


# ---------------------------------------------------------------------------------- the endpoint
class IdleBroker:
    subscribers: list[Any] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_given_a_service_with_an_http_port_when_metrics_scraped_then_prometheus_text() -> None:
    svc = Service.create(
        "metrics_http", InfraSettings(stripe_api_base="http://127.0.0.1:9"), needs_postgres=False
    )
    metrics.MESSAGES_PRODUCED.labels("metrics.endpoint.v1").inc()
    transport = httpx.ASGITransport(app=svc.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        res = await client.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(res.text)}
    assert "tierline_consumer_lag" in families
    produced = families["tierline_messages_produced"]
    assert any(s.labels.get("topic") == "metrics.endpoint.v1" for s in produced.samples)


async def test_given_a_service_without_http_when_started_with_a_metrics_port_then_only_metrics_served() -> (
    None
):
    port = free_port()
    settings = InfraSettings(stripe_api_base="http://127.0.0.1:9", metrics_port=port)
    svc = Service.create("metrics_only", settings, needs_postgres=False)
    svc.broker = IdleBroker()  # type: ignore[assignment]
    await svc.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            scraped = await client.get("/metrics")
            health = await client.get("/healthz")
        assert scraped.status_code == 200
        assert "tierline_messages_consumed_total" in scraped.text
        assert health.status_code == 404  # the metrics port serves metrics, nothing else
    finally:
        await svc.stop()


def test_given_the_registry_when_names_listed_then_series_suffixes_are_included() -> None:
    names = metrics.metric_names()
    assert {
        "tierline_messages_consumed_total",
        "tierline_handler_duration_seconds_bucket",
        "tierline_consumer_lag",
        "tierline_first_response_seconds_count",
        "tierline_audit_chain_broken",
    } <= names


def test_given_the_stack_ports_when_status_printed_then_each_tierline_service_names_its_scrape_url() -> None:
    from tierline.cli import metrics_targets

    text = metrics_targets({"router": 8102, "tier2_agent": 8105})
    assert "2 targets" in text
    assert "http://127.0.0.1:8102/metrics" in text
    assert "http://127.0.0.1:8105/metrics" in text


async def test_given_stripe_unreachable_when_diagnostics_reads_live_then_an_unavailable_error_counted() -> (
    None
):
    from services.diagnostics.adapters.stripe_reader import READ_OPERATION, StripeLiveReader
    from tierline.diagnostics_client import SourceUnavailable

    reader = StripeLiveReader("sk_test_metrics", "http://127.0.0.1:9", timeout_s=2.0, emulated=True)
    errors = value("tierline_stripe_call_errors_total", operation=READ_OPERATION, error="unavailable")
    calls = value("tierline_stripe_call_duration_seconds_count", operation=READ_OPERATION)
    with pytest.raises(SourceUnavailable):
        await reader.read_customer("cus_metrics_unreachable")
    assert (
        value("tierline_stripe_call_errors_total", operation=READ_OPERATION, error="unavailable")
        == errors + 1
    )
    assert value("tierline_stripe_call_duration_seconds_count", operation=READ_OPERATION) == calls + 1


def test_given_an_audit_chain_when_verified_then_the_broken_gauge_says_whether_a_link_broke() -> None:
    from services.analytics.domain import ChainRow
    from services.analytics.routes import verify_report

    class Store:
        def __init__(self, rows: list[ChainRow]) -> None:
            self.rows = rows

        def ensure_schema(self) -> None:
            return None

        def audit_chain(self) -> list[ChainRow]:
            return self.rows

    forged = ChainRow(partition=0, offset=5, message_id="m5", record="{}", prev_hash="f" * 64, hash="0" * 64)
    assert verify_report(Store([forged]))["ok"] is False  # type: ignore[arg-type]
    assert value("tierline_audit_chain_broken") == 1
    assert verify_report(Store([]))["ok"] is True  # type: ignore[arg-type]
    assert value("tierline_audit_chain_broken") == 0
    assert value("tierline_audit_chain_verified_timestamp_seconds") > 0
