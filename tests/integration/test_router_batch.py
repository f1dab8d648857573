"""The router's batch path (issue 22) on the session's Postgres: one inbox read and one inbox write per
batch, one classifier call, one facts statement for every customer; each customer's contacts in log
order; a contact that keeps failing dead-lettered alone while the rest are routed; a batch whose
publishes are not acknowledged is not marked, so its redelivery publishes identical messages."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from schemas import Channel, HealthStatus, Intent, RootCause
from schemas.messages import (
    AuditEventRecordedV1,
    ContactReceivedPayload,
    ContactReceivedV1,
    DiagnosisView,
    SelfhealRequestedV1,
    Sender,
)
from services.router.handlers import RouterDeps, on_contacts_received
from tierline.billing.facts import CustomerFacts, InMemoryFacts, PostgresFacts
from tierline.messaging import DeadLetterRouter, Inbox

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Reading:
    intent: Intent
    confidence: float
    candidates: list[tuple[Intent, float]]


class CountingClassifier:
    threshold = 0.5

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, texts: list[str]) -> list[Any]:
        self.calls += 1
        return [Reading(Intent.INVOICE_REQUEST, 0.95, [(Intent.INVOICE_REQUEST, 0.95)]) for _ in texts]


@dataclass
class FakeDiagnostics:
    failing: set[str] = field(default_factory=set)
    calls: list[tuple[str, str | None]] = field(default_factory=list)

    async def diagnose(self, customer_id: str, *, contact_id: str | None = None) -> DiagnosisView:
        self.calls.append((customer_id, contact_id))
        if contact_id in self.failing:
            raise RuntimeError(f"cannot diagnose {contact_id}")
        return DiagnosisView(
            customer_id=customer_id,
            status=HealthStatus.GREEN,
            root_cause=RootCause.HEALTHY,
            explanation="All good.",
            evidence={"plan": {"tier": "pro"}},
        )


class BatchCountingFacts(InMemoryFacts):
    def __init__(self, facts: list[CustomerFacts]) -> None:
        super().__init__(facts)
        self.batches: list[list[str]] = []

    async def load_many(self, customer_ids: Any, **kw: Any) -> dict[str, CustomerFacts]:
        self.batches.append(list(customer_ids))
        return {c: self.facts.get(c) or CustomerFacts(customer_id=c) for c in customer_ids}


class Broker:
    """Records what is published; ``refuse``: the acknowledgements fail (a broker lost mid-batch)."""

    def __init__(self, refuse: bool = False) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.refuse = refuse

    async def publish(self, body: bytes, *, topic: str, no_confirm: bool = False, **kw: Any) -> Any:
        self.published.append((topic, json.loads(body)))

        async def ack() -> None:
            if self.refuse:
                raise ConnectionError("not acknowledged")

        return ack() if no_confirm else await ack()

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [b for t, b in self.published if t == topic]


class RecordingDeadLetters(DeadLetterRouter):
    def __init__(self) -> None:
        super().__init__("router-test", max_attempts=2, backoff_s=0.0)
        self.given_up: list[tuple[int, str]] = []

    async def give_up(self, raw: Any, error: BaseException, attempts: int) -> None:
        self.given_up.append((raw.offset, type(error).__name__))


@dataclass
class Record:
    offset: int
    topic: str = ContactReceivedV1.TOPIC
    partition: int = 0


def contacts(unique: str, n: int, customers: int) -> list[ContactReceivedV1]:
    out = []
    for i in range(n):
        cid = f"cus_rb_{unique}_{i % customers}"
        out.append(
            ContactReceivedV1.build(
                ContactReceivedPayload(
                    text=f"Please send me invoice number {i}",
                    channel=Channel.CHAT,
                    sender=Sender(kind="customer_session", subject=cid),
                ),
                contact_id=f"ct_rb_{unique}_{i}",
                customer_id=cid,
            )
        )
    return out


def deps_for(pg_pool: Any, unique: str, broker: Any, diagnostics: Any, facts: Any) -> RouterDeps:
    return RouterDeps(
        pool=pg_pool,
        broker=broker,
        classifier=CountingClassifier(),
        diagnostics=diagnostics,
        inbox=Inbox(pg_pool, f"router-batch-{unique}"),
        facts=facts,
    )


async def test_given_a_batch_of_contacts_when_routed_then_one_classifier_call_one_facts_read_and_each_once(
    pg_pool: Any, unique: str
) -> None:
    msgs = contacts(unique, 9, customers=3)
    facts = BatchCountingFacts([CustomerFacts(customer_id=m.customer_id, in_store=True) for m in msgs])
    broker, diagnostics = Broker(), FakeDiagnostics()
    deps = deps_for(pg_pool, unique, broker, diagnostics, facts)

    routed = await on_contacts_received(deps, [(m, None) for m in msgs])

    assert routed == 9
    assert deps.classifier.calls == 1  # type: ignore[attr-defined]
    assert len(facts.batches) == 1
    assert sorted(set(facts.batches[0])) == sorted({m.customer_id for m in msgs})
    requests = broker.on(SelfhealRequestedV1.TOPIC)
    assert sorted(r["contact_id"] for r in requests) == sorted(m.contact_id for m in msgs)
    for cid in {m.customer_id for m in msgs}:  # each customer's contacts in log order
        in_log = [m.contact_id for m in msgs if m.customer_id == cid]
        assert [c for who, c in diagnostics.calls if who == cid] == in_log
        assert [r["contact_id"] for r in requests if r["customer_id"] == cid] == in_log
    marked = await deps.inbox.seen_many([m.message_id for m in msgs])
    assert marked == {m.message_id for m in msgs}

    again = await on_contacts_received(deps, [(m, None) for m in msgs])  # the batch redelivered

    assert again == 0
    assert len(broker.on(SelfhealRequestedV1.TOPIC)) == 9


async def test_given_one_contact_that_keeps_failing_when_its_batch_is_routed_then_it_alone_is_dead_lettered(
    pg_pool: Any, unique: str
) -> None:
    msgs = contacts(unique, 6, customers=2)
    poison = msgs[2]
    broker, diagnostics = Broker(), FakeDiagnostics(failing={poison.contact_id})
    deps = deps_for(pg_pool, unique, broker, diagnostics, InMemoryFacts())
    dead_letters = RecordingDeadLetters()

    routed = await on_contacts_received(
        deps, [(m, Record(offset=i)) for i, m in enumerate(msgs)], dead_letters
    )

    assert routed == 5
    assert dead_letters.given_up == [(2, "RuntimeError")]
    forwarded = {b["contact_id"] for b in broker.on(SelfhealRequestedV1.TOPIC)}
    assert forwarded == {m.contact_id for m in msgs} - {poison.contact_id}
    # the poison customer's later contact still went on, after it
    later = msgs[4]
    assert later.customer_id == poison.customer_id
    assert later.contact_id in forwarded
    marked = await deps.inbox.seen_many([m.message_id for m in msgs])
    assert marked == {m.message_id for m in msgs} - {poison.message_id}


async def test_given_publishes_not_acknowledged_when_the_batch_ends_then_unmarked_and_redelivered_identical(
    pg_pool: Any, unique: str
) -> None:
    msgs = contacts(unique, 4, customers=2)
    lost = Broker(refuse=True)
    deps = deps_for(pg_pool, unique, lost, FakeDiagnostics(), InMemoryFacts())

    with pytest.raises(ConnectionError):
        await on_contacts_received(deps, [(m, None) for m in msgs])

    assert await deps.inbox.seen_many([m.message_id for m in msgs]) == set()
    broker = Broker()
    deps.broker = broker  # type: ignore[assignment]
    assert await on_contacts_received(deps, [(m, None) for m in msgs]) == 4

    def ids(b: Broker, topic: str) -> list[tuple[str, str]]:
        return sorted((m["contact_id"], m["message_id"]) for m in b.on(topic))

    for topic in (SelfhealRequestedV1.TOPIC, AuditEventRecordedV1.TOPIC):
        assert ids(broker, topic) == ids(lost, topic)


async def test_given_many_customers_when_facts_loaded_in_one_statement_then_each_as_loaded_alone(
    pg_pool: Any, unique: str
) -> None:
    known = f"cus_rbf_{unique}"
    await pg_pool.execute(
        "INSERT INTO customers (id, email, plan_tier, risk_flags) VALUES ($1, $2, 'pro', '{}'::jsonb)",
        known,
        f"{known}@example.com",
    )
    for n in range(3):
        await pg_pool.execute(
            "INSERT INTO contacts (contact_id, customer_id, trigger) VALUES ($1, $2, 'contact')",
            f"ct_rbf_{unique}_{n}",
            known,
        )
    repo = PostgresFacts(pg_pool)
    handled = [f"ct_rbf_{unique}_0", f"ct_rbf_{unique}_new"]
    unknown = f"cus_rbf_nobody_{uuid.uuid4().hex[:6]}"

    many = await repo.load_many([known, unknown], contact_ids=handled)

    alone = await repo.load(known, contact_id=handled[0])
    assert many[known].store_plan == alone.store_plan == "pro"
    assert many[known].email == alone.email
    assert many[known].repeat_contacts == alone.repeat_contacts == 2  # the batch's own contacts excluded
    assert not many[unknown].known
