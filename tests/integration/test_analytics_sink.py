"""The analyst stream on the real broker and chDB.

Given messages on the topics, When the sink runs, Then ClickHouse, the report and the chain say ...
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import clickhouse_connect
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import Tier
from schemas.messages import (
    AuditEventPayload,
    AuditEventRecordedV1,
    OutcomeRecordedPayload,
    OutcomeRecordedV1,
)
from schemas.vocab import EscalationReason, Intent, RootCause
from services.analytics.audit_chain import audit_main
from services.analytics.domain import ChainKeys, DriftThresholds, chain_hash
from services.analytics.drift import run_drift_check
from services.analytics.report import report_main
from services.analytics.routes import analytics_routes
from services.analytics.sink import register_analytics_sink
from services.analytics.store import AnalyticsStore
from tierline.messaging import encode, headers_for, publish
from tierline.runtime import Service

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ch_client(infra: Any) -> Any:
    return clickhouse_connect.get_client(dsn=infra.clickhouse_dsn)


@pytest.fixture(scope="module")
def database() -> str:
    return f"analytics_{uuid.uuid4().hex[:10]}"


CHAIN_KID = "k1"
CHAIN_KEYS = ChainKeys.parse(f"{CHAIN_KID}:{uuid.uuid4().hex}")  # the sink's key: tests never see it


@pytest.fixture(scope="module")
async def analytics(infra: Any, ch_client: Any, database: str) -> AsyncIterator[Service]:
    name = f"analytics_test_{uuid.uuid4().hex[:8]}"  # its own consumer group, reads from the start
    settings = infra.model_copy(update={"http_port": free_port()})
    service = Service.create(
        name,
        settings,
        http_port=settings.http_port,
        needs_postgres=False,
        routes=analytics_routes(ch_client, database=database, chain_keys=CHAIN_KEYS),
    )
    register_analytics_sink(service, ch_client, database=database, drift=False, chain_keys=CHAIN_KEYS)
    await service.start()
    yield service
    await service.stop()


async def wait_for(check: Callable[[], Any], within: float = 60.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.3)


def json_in(out: str) -> Any:
    """The JSON document printed by a CLI (stdout may also carry the process's event log lines)."""
    return json.JSONDecoder().raw_decode(out[out.index("{\n") :])[0]


def outcome(
    contact: str,
    customer: str,
    at: datetime,
    tier: Tier,
    *,
    cost: float,
    intent: Intent | None = None,
    recovered: float = 0.0,
    reason: EscalationReason | None = None,
    root: RootCause | None = None,
) -> OutcomeRecordedV1:
    return OutcomeRecordedV1.build(
        OutcomeRecordedPayload(
            resolved_by=tier,
            tier_path=[tier],
            intent=intent,
            root_cause=root,
            recovered_usd=recovered,
            escalation_reason=reason,
            cost_usd=cost,
        ),
        contact_id=contact,
        customer_id=customer,
        message_id=uuid.uuid5(uuid.NAMESPACE_URL, contact),
        occurred_at=at,
    )


# --------------------------------------------------------------------------- exactly-once
async def test_given_same_outcome_published_twice_when_sunk_then_one_row_counted(
    analytics, ch_client, database, infra, unique
):
    store = AnalyticsStore(ch_client, database)
    at = datetime(2018, 6, 5, 12, tzinfo=UTC)
    msg = outcome(
        f"eo-{unique}",
        f"cus_{unique}",
        at,
        Tier.TIER1,
        cost=0.1,
        intent=Intent.PAYMENT_FAILED,
        recovered=42.0,
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(
                msg.TOPIC,
                encode(msg),
                key=msg.key(),
                headers=[(k, v.encode()) for k, v in headers_for(msg).items()],
            )
        marker = outcome(f"eo2-{unique}", f"cus_{unique}", at, Tier.TIER0, cost=0.0)  # published after both
        await producer.send_and_wait(marker.TOPIC, encode(marker), key=marker.key())
    finally:
        await producer.stop()
    await wait_for(lambda: store.run(store.outcome_exists, marker.contact_id))
    assert await store.run(store.outcome_count, msg.contact_id) == 1
    raw = ch_client.query(
        f"SELECT count() FROM {database}.outcomes WHERE contact_id = {{c:String}}",
        parameters={"c": msg.contact_id},
    ).result_rows[0][0]
    assert raw == 1  # the explicit check kept the duplicate out; FINAL would hide it anyway
    from services.analytics.queries import build_report

    report = await store.run(build_report, store, date(2018, 6, 5), date(2018, 6, 5))
    assert report["totals"]["contacts"] == 2
    assert report["totals"]["recovered_usd"] == 42.0


# --------------------------------------------------------------------------- report numbers
async def test_given_hand_computed_fixture_when_reporting_then_every_number_matches(
    analytics, ch_client, database, unique, tmp_path, capsys
):
    a, b, c = f"cusA_{unique}", f"cusB_{unique}", f"cusC_{unique}"
    d = lambda day, h=10: datetime(2019, 3, day, h, tzinfo=UTC)  # noqa: E731
    fixture = [
        outcome(f"r1-{unique}", a, d(1), Tier.TIER0, cost=0.0, intent=Intent.PAYMENT_FAILED, recovered=50.0),
        outcome(f"r2-{unique}", a, d(3), Tier.TIER1, cost=0.10, intent=Intent.PAYMENT_FAILED, recovered=30.0),
        outcome(f"r3-{unique}", b, d(1, 11), Tier.TIER2, cost=0.30, intent=Intent.REFUND_REQUEST),
        outcome(
            f"r4-{unique}",
            b,
            d(20),
            Tier.TIER3,
            cost=8.30,
            intent=Intent.REFUND_REQUEST,
            reason=EscalationReason.DISPUTE,
        ),
        outcome(
            f"r5-{unique}",
            c,
            d(2),
            Tier.TIER3,
            cost=8.00,
            intent=Intent.FRAUD_COMPROMISED,
            reason=EscalationReason.FRAUD,
        ),
        outcome(
            f"r6-{unique}",
            c,
            datetime(2019, 4, 2, tzinfo=UTC),
            Tier.TIER1,
            cost=0.10,
            intent=Intent.CARD_EXPIRING,
            recovered=99.0,
        ),  # outside the period
    ]
    for m in fixture:
        await publish(analytics.broker, m)
    store = AnalyticsStore(ch_client, database)
    for m in fixture:
        await wait_for(lambda m=m: store.run(store.outcome_exists, m.contact_id))

    png = tmp_path / "report.png"
    url = f"http://127.0.0.1:{analytics.http_port}"
    assert (
        await asyncio.to_thread(
            report_main,
            ["--start", "2019-03-01", "--end", "2019-03-31", "--json", "--url", url, "--plot", str(png)],
        )
        == 0
    )
    report = json_in(capsys.readouterr().out)
    t = report["totals"]
    assert t["contacts"] == 5
    assert t["automated"] == 3
    assert t["automated_rate"] == 0.6
    assert t["cost_usd"] == pytest.approx(16.70)
    assert t["cost_per_contact_usd"] == pytest.approx(3.34)
    assert t["recovered_usd"] == 80.0
    assert t["escalations"] == 2
    assert t["repeat_contact_rate_7d"] == 0.2  # only r2 (A again within 7 days); r4 came 19 days later
    assert {r["tier"]: r["contacts"] for r in report["resolution_by_tier"]} == {
        "tier0": 1,
        "tier1": 1,
        "tier2": 1,
        "tier3": 2,
    }
    by_intent = {r["intent"]: r for r in report["resolution_by_intent"]}
    assert by_intent["payment_failed"]["automated_rate"] == 1.0
    assert by_intent["refund_request"]["contacts"] == 2
    assert by_intent["refund_request"]["automated_rate"] == 0.5
    assert {r["tier"]: r["recovered_usd"] for r in report["recovered_revenue"]} == {
        "tier0": 50.0,
        "tier1": 30.0,
    }
    assert {r["reason"]: r["escalations"] for r in report["escalation_reasons"]} == {"dispute": 1, "fraud": 1}
    assert report["cost_by_month"] == [
        {"month": "2019-03-01", "contacts": 5, "cost_usd": 16.7, "cost_per_contact_usd": 3.34}
    ]
    day1 = next(r for r in report["resolution_by_day"] if r["day"] == "2019-03-01")
    assert day1["contacts"] == 2
    assert day1["tier0"] == 1
    assert day1["tier2"] == 1
    assert png.stat().st_size > 5000

    assert (
        await asyncio.to_thread(report_main, ["--start", "2019-03-01", "--end", "2019-03-31", "--url", url])
        == 0
    )
    table = capsys.readouterr().out
    assert "Escalation reasons" in table
    assert "16.70" in table


# --------------------------------------------------------------------------- audit chain
async def test_given_chained_audit_records_when_one_is_altered_then_verify_reports_that_link(
    analytics, ch_client, database, unique, capsys
):
    msgs = [
        AuditEventRecordedV1.build(
            AuditEventPayload(
                actor="tier2_agent",
                action="refund",
                target=f"ch_{i}",
                decision="allow",
                details={"amount_usd": 10 + i},
            ),
            contact_id=f"au-{unique}-{i}",
            customer_id=f"cus_{unique}",
        )
        for i in range(5)
    ]
    for m in msgs:
        await publish(analytics.broker, m)
    store = AnalyticsStore(ch_client, database)
    for m in msgs:
        await wait_for(lambda m=m: store.run(store.audit_message_seen, str(m.message_id)))
    await publish(analytics.broker, msgs[2])  # a republished record is not chained twice
    url = f"http://127.0.0.1:{analytics.http_port}"
    assert await asyncio.to_thread(audit_main, ["verify", "--url", url]) == 0
    assert "audit chain OK" in capsys.readouterr().out

    victim = msgs[3]
    row = ch_client.query(
        f"SELECT partition, offset, record FROM {database}.audit_events FINAL WHERE message_id = {{m:UUID}}",
        parameters={"m": str(victim.message_id)},
    ).result_rows[0]
    altered = row[2].replace('"decision":"allow"', '"decision":"deny"')
    assert altered != row[2]
    await store.run(store.tamper_audit_record, str(victim.message_id), altered)

    assert await asyncio.to_thread(audit_main, ["verify", "--url", url, "--json"]) == 1
    result = json_in(capsys.readouterr().out)
    assert result["ok"] is False
    assert result["broken"]["message_id"] == str(victim.message_id)
    assert (result["broken"]["partition"], result["broken"]["offset"]) == (row[0], row[1])
    await store.run(store.tamper_audit_record, str(victim.message_id), row[2])  # restore for other tests


async def test_given_a_keyed_chain_when_an_insider_rewrites_a_record_and_its_hash_then_verify_still_fails(
    analytics, ch_client, database, unique, capsys
):
    msgs = [
        AuditEventRecordedV1.build(
            AuditEventPayload(actor="tier2_agent", action="refund", target=f"ch_k{i}", decision="allow"),
            contact_id=f"auk-{unique}-{i}",
            customer_id=f"cus_{unique}",
        )
        for i in range(3)
    ]
    for m in msgs:
        await publish(analytics.broker, m)
    store = AnalyticsStore(ch_client, database)
    for m in msgs:
        await wait_for(lambda m=m: store.run(store.audit_message_seen, str(m.message_id)))
    victim = msgs[1]
    partition, offset, record, prev, link = ch_client.query(
        f"SELECT partition, offset, record, prev_hash, hash FROM {database}.audit_events FINAL "
        "WHERE message_id = {m:UUID}",
        parameters={"m": str(victim.message_id)},
    ).result_rows[0]
    assert link.startswith(f"{CHAIN_KID}:")  # the sink signs each link with its key
    altered = record.replace('"decision":"allow"', '"decision":"deny"')
    url = f"http://127.0.0.1:{analytics.http_port}"

    # an insider with write access but without the key: a plain SHA-256 link, or an HMAC under a guess
    for forged in (
        chain_hash(prev, altered),
        chain_hash(prev, altered, ChainKeys.parse(f"{CHAIN_KID}:guess")),
    ):
        await store.run(store.tamper_audit_record, str(victim.message_id), altered, forged)
        assert await asyncio.to_thread(audit_main, ["verify", "--url", url, "--json"]) == 1
        result = json_in(capsys.readouterr().out)
        assert (result["ok"], result["keyed"]) == (False, True)
        assert (result["broken"]["partition"], result["broken"]["offset"]) == (partition, offset)
    await store.run(store.tamper_audit_record, str(victim.message_id), record, link)  # restore
    assert await asyncio.to_thread(audit_main, ["verify", "--url", url]) == 0


# --------------------------------------------------------------------------- drift
def synthetic(store: AnalyticsStore, day: date, shares: dict[Intent, int], tag: str) -> None:
    msgs = []
    for intent, n in shares.items():
        for i in range(n):
            m = outcome(
                f"dr-{tag}-{day}-{intent}-{i}",
                f"cus_{tag}_{i}",
                datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=1),
                Tier.TIER1,
                cost=0.1,
                intent=intent,
                root=RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS
                if intent is Intent.PAYMENT_FAILED
                else RootCause.INVOICE_LINK_EXPIRED,
            )
            msgs.append(m.model_dump(mode="json"))
    store.insert_outcomes(msgs)


async def collect_alerts(
    infra: Any, match: Callable[[dict[str, Any]], bool], settle: float = 3.0
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        "ops.alert.raised.v1",
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=f"t-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + settle + 10
        while loop.time() < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [b for b in (json.loads(r.value) for r in records) if match(b)]
    finally:
        await consumer.stop()
    return found


async def test_given_flat_series_then_no_drift_and_given_spike_then_drift_alert(
    analytics, ch_client, infra, unique
):
    db = f"drift_{unique}"
    store = AnalyticsStore(ch_client, db)
    await store.run(store.ensure_schema)
    day = date(2020, 2, 29)
    for back in range(1, 29):
        await store.run(
            synthetic,
            store,
            day - timedelta(days=back),
            {Intent.PAYMENT_FAILED: 5, Intent.INVOICE_REQUEST: 5},
            unique,
        )
    flat_day = day - timedelta(days=0)
    await store.run(synthetic, store, flat_day, {Intent.PAYMENT_FAILED: 6, Intent.INVOICE_REQUEST: 6}, unique)
    assert await run_drift_check(store, analytics.broker, flat_day, DriftThresholds()) == []

    spike_db = f"drift_spike_{unique}"
    spike = AnalyticsStore(ch_client, spike_db)
    await spike.run(spike.ensure_schema)
    for back in range(1, 29):
        await spike.run(
            synthetic,
            spike,
            day - timedelta(days=back),
            {Intent.PAYMENT_FAILED: 5, Intent.INVOICE_REQUEST: 5},
            unique,
        )
    await spike.run(synthetic, spike, day, {Intent.PAYMENT_FAILED: 40, Intent.INVOICE_REQUEST: 5}, unique)
    alerts = await run_drift_check(spike, analytics.broker, day, DriftThresholds())
    subjects = {a.payload.subject for a in alerts}
    assert "intent:payment_failed" in subjects
    assert "root_cause:card_declined_insufficient_funds" in subjects
    pf = next(a for a in alerts if a.payload.subject == "intent:payment_failed")
    assert pf.payload.observed == pytest.approx(40 / 45, abs=1e-3)
    assert pf.payload.expected == 0.5
    on_topic = await collect_alerts(
        infra,
        lambda b: (
            b.get("payload", {}).get("kind") == "drift"
            and b["payload"].get("details", {}).get("database") == spike_db
        ),
    )
    assert {b["payload"]["subject"] for b in on_topic} == subjects


# --------------------------------------------------------------------------- batches and bad input
async def test_given_a_burst_with_a_malformed_record_when_sunk_then_rest_stored_and_it_dead_lettered(
    analytics, ch_client, database, infra, unique
):
    from tests.helpers import read_topic

    store = AnalyticsStore(ch_client, database)
    at = datetime(2018, 7, 1, 9, tzinfo=UTC)
    burst = [outcome(f"burst-{i}-{unique}", f"cus_b{unique}", at, Tier.TIER2, cost=0.2) for i in range(25)]
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        await producer.send_and_wait(
            OutcomeRecordedV1.TOPIC, b'{"not": "an outcome", "tag": "' + unique.encode() + b'"}'
        )
        sent = [await producer.send(m.TOPIC, encode(m), key=m.key()) for m in burst]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    for m in burst:
        await wait_for(lambda m=m: store.run(store.outcome_exists, m.contact_id))
    assert await store.run(store.existing_outcomes, [m.contact_id for m in burst]) == {
        m.contact_id for m in burst
    }
    dead = await read_topic(
        infra.kafka_bootstrap,
        "deadletter.message.recorded.v1",
        lambda b: unique in str(b.get("payload", {}).get("value", "")),
    )
    assert dead[0]["payload"]["original_topic"] == OutcomeRecordedV1.TOPIC
    assert dead[0]["payload"]["error"]


# --------------------------------------------------------------------------- the service as deployed
async def test_given_the_analytics_service_when_an_outcome_is_published_then_its_own_api_reports_it(
    infra, unique
):
    """Given `tierline serve analytics_sink` as the registry builds it (its own process in the embedded
    stack, the diagnostics process no longer hosting it), When an outcome is published, Then its
    analytics API counts it for `tierline report`, and asks for the service token."""
    import httpx

    from tierline.registry import load_service_factory
    from tierline.service_auth import bearer_headers

    port = free_port()
    service = load_service_factory("analytics_sink")(infra.model_copy(update={"http_port": port}))
    await service.start()
    try:
        at = datetime(2015, 7, 4, 9, tzinfo=UTC)  # a day no other test writes to the default database
        await publish(service.broker, outcome(f"svc-{unique}", f"cus_{unique}", at, Tier.TIER1, cost=0.1))
        url = f"http://127.0.0.1:{port}/v1/analytics/report"
        params = {"start": "2015-07-04", "end": "2015-07-04"}
        headers = bearer_headers(infra.service_token.get_secret_value())

        async def counted() -> Any:
            async with httpx.AsyncClient() as client:
                res = await client.get(url, params=params, headers=headers)
            return res.status_code == 200 and res.json()["totals"]["contacts"] == 1

        await wait_for(counted)
        async with httpx.AsyncClient() as client:
            assert (await client.get(url, params=params)).status_code == 401
    finally:
        await service.stop()
