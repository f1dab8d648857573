"""Run scenarios through the real doors of a running stack and report what actually happened.

Doors only: the world is built in the Stripe emulator (and usage through the metering topic, disputes
through the signed webhook ingress), the trigger goes in as a contact / self-heal message on the
broker or a signed Stripe webhook, and the result is read from the contact's one outcome and the
action ledger. Each scenario gets its own customer, so worlds never leak into each other.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import structlog
from faststream.kafka import KafkaBroker

from schemas import Action, Channel, Tier
from schemas.messages import (
    ContactReceivedPayload,
    ContactReceivedV1,
    SelfhealRequestedPayload,
    SelfhealRequestedV1,
    Sender,
    UsageEventPayload,
    UsageEventRecordedV1,
)
from tierline.db import create_pool
from tierline.messaging import publish
from tierline.service_auth import bearer_headers
from tierline.settings import InfraSettings
from tierline_tools.scenarios.model import Scenario, ScenarioResult

log = structlog.get_logger(__name__)


class ScenarioRunner:
    def __init__(self, settings: InfraSettings, *, ingress_url: str, timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.ingress_url = ingress_url.rstrip("/")
        self.timeout_s = timeout_s
        self.broker = KafkaBroker(settings.kafka_bootstrap, logger=None)
        self.pool: asyncpg.Pool | None = None
        self.http = httpx.AsyncClient(timeout=30)
        self.actions: Any = None

    async def __aenter__(self) -> ScenarioRunner:
        from tierline.stripe_adapter import StripeActions

        await self.broker.connect()
        self.pool = await create_pool(self.settings.postgres_dsn, max_size=8)
        self.actions = StripeActions(self.settings)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.stop()
        if self.pool is not None:
            await self.pool.close()
        await self.http.aclose()

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None
        return self.pool

    # ------------------------------------------------------------------ doors
    async def send_webhook(self, event: dict[str, Any]) -> httpx.Response:
        from tierline_tools.world import sign_payload

        body = json.dumps(event).encode()
        secret = self.settings.webhook_secrets()[0]
        header = sign_payload(body, secret, int(time.time()))
        return await self.http.post(
            f"{self.ingress_url}/stripe/webhook",
            content=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )

    async def publish_usage(self, customer_id: str, usage_events: list[Any]) -> int:
        n = 0
        for i, item in enumerate(usage_events):
            metric, ts, units = (
                item if isinstance(item, tuple | list) else (item["metric"], item["ts"], item["units"])
            )
            when = ts if isinstance(ts, datetime) else datetime.fromtimestamp(float(ts), UTC)
            msg = UsageEventRecordedV1.build(
                UsageEventPayload(event_id=f"{customer_id}-u{i}", metric=metric, units=float(units), ts=when),
                contact_id=f"usage:{customer_id}",
                customer_id=customer_id,
            )
            await publish(self.broker, msg)
            n += 1
        return n

    async def wait_for(
        self,
        predicate: Any,
        what: str,
        timeout: float | None = None,  # noqa: ASYNC109 - a polling deadline that raises a named error
    ) -> None:
        deadline = time.monotonic() + (timeout or self.timeout_s)
        while time.monotonic() < deadline:
            if await predicate():
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}")

    async def usage_visible(self, customer_id: str, expected_events: int) -> bool:
        try:
            resp = await self.http.get(
                f"{self.settings.diagnostics_url}/v1/customers/{customer_id}/usage",
                params={"days": 120},
                headers=bearer_headers(self.settings.service_token.get_secret_value()),
            )
        except httpx.HTTPError:
            return False
        if resp.status_code != 200:
            return False
        return int(resp.json().get("events", -1)) >= expected_events

    # ------------------------------------------------------------------ one scenario
    async def run(self, scenario: Scenario) -> ScenarioResult:
        from tierline_tools.world import WorldSpec, build_world, world_event

        t0 = time.monotonic()
        contact_id: str | None = None
        try:
            spec = WorldSpec.model_validate(scenario.world)
            built = await build_world(spec, self.actions, label=scenario.id)
            customer_id = built.customer_id
            if built.usage_events:
                n = await self.publish_usage(customer_id, built.usage_events)
                await self.wait_for(lambda: self.usage_visible(customer_id, n), "usage ingestion", 60)
            for event in built.pending_events:
                resp = await self.send_webhook(event)
                if resp.status_code >= 300:
                    raise RuntimeError(f"ingress refused world event {event.get('type')}: {resp.text}")
                if event.get("type", "").startswith("charge.dispute"):
                    dispute_id = event["data"]["object"]["id"]
                    await self.wait_for(
                        lambda d=dispute_id: self._exists("stripe_disputes", d), "dispute mirrored", 30
                    )
            t_trigger = time.monotonic()
            if scenario.contact is not None:
                contact_id = f"c-{uuid.uuid4()}"
                channel = (
                    scenario.contact.channel
                    if scenario.contact.channel in Channel._value2member_map_
                    else "chat"
                )
                await publish(
                    self.broker,
                    ContactReceivedV1.build(
                        ContactReceivedPayload(
                            channel=Channel(channel),
                            text=scenario.contact.text,
                            sender=Sender(kind="customer_session", subject=customer_id),
                        ),
                        contact_id=contact_id,
                        customer_id=customer_id,
                    ),
                )
            elif scenario.selfheal is not None:
                contact_id = f"s-{uuid.uuid4()}"
                params = {k: v for k, v in scenario.selfheal.items() if k != "action"}
                await publish(
                    self.broker,
                    SelfhealRequestedV1.build(
                        SelfhealRequestedPayload(
                            action=Action(scenario.selfheal["action"]),
                            params=params,
                            source="dashboard",
                            sender=Sender(kind="customer_session", subject=customer_id),
                        ),
                        contact_id=contact_id,
                        customer_id=customer_id,
                    ),
                )
            else:
                assert scenario.stripe_event is not None
                event = await world_event(scenario.stripe_event, built)
                contact_id = f"stripe:{event['id']}"
                resp = await self.send_webhook(event)
                if resp.status_code >= 300:
                    raise RuntimeError(f"ingress refused {event.get('type')}: {resp.status_code} {resp.text}")
            outcome = await self.wait_outcome(contact_id)
            latency = int((time.monotonic() - t_trigger) * 1000)
            if outcome is None:
                return ScenarioResult(
                    id=scenario.id,
                    contact_id=contact_id,
                    latency_ms=latency,
                    actions=await self.ledger_actions(contact_id),
                    refund_usd=await self.refunded(customer_id),
                    error=f"dead end: no outcome within {self.timeout_s:.0f}s",
                )
            payload = outcome["payload"]
            actions = list(
                dict.fromkeys([*payload.get("actions", []), *await self.ledger_actions(contact_id)])
            )
            if payload.get("escalation_reason") and "escalate" not in actions:
                actions.append("escalate")
            return ScenarioResult(
                id=scenario.id,
                resolved_by=Tier(payload["resolved_by"]),
                actions=actions,
                refund_usd=max(float(payload.get("refund_usd") or 0), await self.refunded(customer_id)),
                escalation_reason=payload.get("escalation_reason"),
                contact_id=contact_id,
                latency_ms=latency,
            )
        except Exception as exc:  # the run reports the failure; it never hides it
            log.error("scenario.error", id=scenario.id, error=f"{type(exc).__name__}: {exc}")
            return ScenarioResult(
                id=scenario.id,
                contact_id=contact_id,
                error=f"{type(exc).__name__}: {exc}",
                latency_ms=int((time.monotonic() - t0) * 1000),
            )

    async def _exists(self, table: str, ident: str) -> bool:
        return await self.db.fetchval(f"SELECT 1 FROM {table} WHERE id=$1", ident) is not None  # noqa: S608

    async def wait_outcome(self, contact_id: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            row = await self.db.fetchval("SELECT message FROM outcomes WHERE contact_id=$1", contact_id)
            if row is not None:
                return dict(row)
            await asyncio.sleep(0.1)
        return None

    async def ledger_actions(self, contact_id: str | None) -> list[str]:
        if contact_id is None:
            return []
        rows = await self.db.fetch(
            "SELECT DISTINCT action FROM action_ledger WHERE contact_id=$1 AND status='succeeded'", contact_id
        )
        # report the closed action vocabulary only (not internal ledger entries such as a dunning schedule)
        return sorted(r["action"] for r in rows if r["action"] in Action._value2member_map_)

    async def refunded(self, customer_id: str) -> float:
        total = await self.db.fetchval(
            """SELECT COALESCE(sum(amount_usd), 0) FROM action_ledger
               WHERE customer_id=$1 AND action='refund' AND status='succeeded'""",
            customer_id,
        )
        return float(total or 0)


async def run_all(
    runner: ScenarioRunner, scenarios: list[Scenario], concurrency: int = 4, on_done: Any = None
) -> list[ScenarioResult]:
    sem = asyncio.Semaphore(concurrency)
    results: dict[str, ScenarioResult] = {}

    async def one(s: Scenario) -> None:
        async with sem:
            results[s.id] = await runner.run(s)
            if on_done is not None:
                on_done(results[s.id])

    await asyncio.gather(*(one(s) for s in scenarios))
    return [results[s.id] for s in scenarios]
