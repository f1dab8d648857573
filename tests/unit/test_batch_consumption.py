"""Batch consumption on the hot path (issue 22): a batch's records are parsed with the poison ones set
aside, each customer's records handled in log order while customers run concurrently, a record that
keeps failing is dead-lettered alone, publishes are awaited together, and the router's prologue reads
every text with one classifier call and every customer's facts with one read."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from schemas import Channel, Intent
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender
from services.router.handlers import RouterDeps, batch_facts, classify_message, classify_messages
from tierline.billing.facts import FACTS_MANY_SQL, CustomerFacts, InMemoryFacts, PostgresFacts, load_many
from tierline.messaging import (
    BATCH_SUBSCRIBER_DEFAULTS,
    LONG_POLL_MS,
    DeadLetterRouter,
    PendingPublishes,
    error_kind,
    long_poll,
    parse_batch,
    publish,
    run_in_key_order,
)

pytestmark = pytest.mark.unit


@dataclass
class Record:
    topic: str = "contact.received.v1"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"cus_1"
    value: bytes = b"{}"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def contact(cid: str, contact_id: str, text: str = "send me my invoice", **kw: Any) -> ContactReceivedV1:
    return ContactReceivedV1.build(
        ContactReceivedPayload(
            text=text, channel=Channel.CHAT, sender=Sender(kind="customer_session", subject=cid)
        ),
        contact_id=contact_id,
        customer_id=cid,
        **kw,
    )


# ------------------------------------------------------------------------------------ the subscriber
def test_given_the_hot_path_settings_when_read_then_small_batches_committed_after_the_handler() -> None:
    assert BATCH_SUBSCRIBER_DEFAULTS["batch"] is True
    assert 32 <= BATCH_SUBSCRIBER_DEFAULTS["max_records"] <= 64
    assert str(BATCH_SUBSCRIBER_DEFAULTS["ack_policy"]).endswith("NACK_ON_ERROR")


def test_given_a_batch_with_poison_when_parsed_then_good_ones_in_order_and_each_bad_one_aside() -> None:
    good_1, good_2 = contact("cus_1", "ct_1"), contact("cus_2", "ct_2")
    bodies = [
        good_1.model_dump_json().encode(),
        b"\xff not json",
        b"[1, 2]",
        good_2.model_dump_json().encode(),
    ]
    records = tuple(Record(offset=i, value=b) for i, b in enumerate(bodies))

    good, bad = parse_batch(ContactReceivedV1, bodies, records)

    assert [(m.contact_id, r.offset) for m, r in good] == [("ct_1", 0), ("ct_2", 3)]
    assert [r.offset for r, _ in bad] == [1, 2]


def test_given_bad_records_when_parsed_in_a_batch_then_the_same_error_kinds_as_one_by_one() -> None:
    versioned = json.loads(contact("cus_1", "ct_v").model_dump_json())
    versioned["schema_version"] = 99
    bodies = [
        b"not json at all",
        b'["a", "json", "list"]',
        b'{"text": "nul \x00 and invalid utf-8 \xff\xfe"}',
        json.dumps({"message_id": "x", "payload": {}}).encode(),
        json.dumps(versioned).encode(),
    ]

    good, bad = parse_batch(ContactReceivedV1, bodies, tuple(Record(offset=i) for i in range(5)))

    assert good == []
    kinds = [error_kind(exc) for _, exc in bad]
    assert kinds == ["not_json", "not_json", "not_json", "invalid_message", "unknown_schema_version"]


class IdleThenBusyConsumer:
    """aiokafka's getmany: nothing on the first poll, three records of two partitions on the second."""

    def __init__(self) -> None:
        self.polls: list[tuple[int, int | None]] = []
        self.answers: list[dict[str, list[Record]]] = [{}, {"p0": [Record(offset=1), Record(offset=2)]}]
        self.answers[1]["p1"] = [Record(partition=1, offset=7)]

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> dict[str, list[Record]]:
        self.polls.append((timeout_ms, max_records))
        return self.answers.pop(0)


async def test_given_a_long_polling_subscriber_when_idle_then_a_second_a_poll_and_no_deaf_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import anyio

    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", no_sleep)
    subscriber = long_poll(
        KafkaBroker("127.0.0.1:1").subscriber("t", group_id="g", **BATCH_SUBSCRIBER_DEFAULTS)
    )
    consumer = IdleThenBusyConsumer()

    assert await subscriber.get_msg(consumer) == ()
    batch = await subscriber.get_msg(consumer)

    assert [(r.partition, r.offset) for r in batch] == [(0, 1), (0, 2), (1, 7)]
    assert consumer.polls == [(LONG_POLL_MS, 64), (LONG_POLL_MS, 64)]
    assert LONG_POLL_MS >= 1000  # an idle subscriber wakes its process at most once a second
    assert slept == []  # a record fetched right after an empty poll is handed on at once


# ------------------------------------------------------------------------------------ key order
async def test_given_two_customers_when_run_then_concurrent_across_and_in_log_order_within() -> None:
    """Customer A's first record waits until customer B's record ran: one at a time, it never would."""
    b_ran = asyncio.Event()
    done: list[str] = []

    async def handle(item: tuple[str, str]) -> None:
        key, name = item
        if name == "a1":
            await asyncio.wait_for(b_ran.wait(), 10)  # a guard against a hang, not a timing assertion
        if key == "b":
            b_ran.set()
        done.append(name)

    await run_in_key_order([("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3")], lambda i: i[0], handle)

    assert done.index("b1") < done.index("a1")
    assert [n for n in done if n.startswith("a")] == ["a1", "a2", "a3"]


# ------------------------------------------------------------------------------------ one record fails
class RecordingDeadLetters(DeadLetterRouter):
    def __init__(self) -> None:
        super().__init__("test", max_attempts=3, backoff_s=0.0)
        self.given_up: list[tuple[int, str, int]] = []

    async def give_up(self, raw: Any, error: BaseException, attempts: int) -> None:
        self.given_up.append((raw.offset, type(error).__name__, attempts))


async def test_given_one_record_that_keeps_failing_when_handled_then_it_alone_is_dead_lettered() -> None:
    router = RecordingDeadLetters()
    calls: dict[int, int] = {}

    async def handler(offset: int) -> None:
        calls[offset] = calls.get(offset, 0) + 1
        if offset == 1:
            raise RuntimeError("bug for this one record")

    results = [await router.handle_one(Record(offset=o), lambda o=o: handler(o)) for o in range(3)]  # type: ignore[misc]

    assert results == [True, False, True]
    assert calls == {0: 1, 1: 3, 2: 1}  # retried in place like a single message, then set aside
    assert router.given_up == [(1, "RuntimeError", 3)]


async def test_given_a_record_that_fails_once_when_handled_then_retried_and_not_dead_lettered() -> None:
    router = RecordingDeadLetters()
    failures = [ConnectionError("blip")]

    async def handler() -> None:
        if failures:
            raise failures.pop()

    assert await router.handle_one(Record(), handler)
    assert router.given_up == []


# ------------------------------------------------------------------------------------ publishes together
class QueueingBroker:
    """Records each publish; with ``no_confirm`` returns the acknowledgement as a future to await."""

    def __init__(self, fail_topic: str | None = None) -> None:
        self.sent: list[tuple[str, bool]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.fail_topic = fail_topic

    async def publish(self, body: bytes, *, topic: str, no_confirm: bool = False, **kw: Any) -> Any:
        self.sent.append((json.loads(body)["contact_id"], no_confirm))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if topic == self.fail_topic:
            ack.set_exception(ConnectionError("not acknowledged"))
        else:
            ack.set_result(None)
        self.acks.append(ack)
        return ack if no_confirm else await ack


async def test_given_pending_publishes_when_published_then_queued_in_order_and_confirmed_together() -> None:
    broker = QueueingBroker()
    async with PendingPublishes() as pending:
        for i in range(3):
            await publish(broker, contact("cus_1", f"ct_{i}"))  # type: ignore[arg-type]
        assert [c for c, _ in broker.sent] == ["ct_0", "ct_1", "ct_2"]
        assert all(queued for _, queued in broker.sent)
        assert await pending.confirm() == 3
    await publish(broker, contact("cus_1", "ct_after"))  # type: ignore[arg-type]
    assert broker.sent[-1] == ("ct_after", False)  # outside a batch: acknowledged one by one


async def test_given_a_publish_the_broker_refuses_when_confirmed_then_the_batch_fails() -> None:
    broker = QueueingBroker(fail_topic=ContactReceivedV1.TOPIC)
    async with PendingPublishes() as pending:
        await publish(broker, contact("cus_1", "ct_1"))  # type: ignore[arg-type]
        with pytest.raises(ConnectionError):
            await pending.confirm()


async def test_given_a_dead_letter_inside_a_batch_when_published_then_it_waits_for_its_acknowledgement() -> (
    None
):
    broker = QueueingBroker()
    async with PendingPublishes() as pending:
        await publish(broker, contact("cus_1", "ct_1"), wait=True)  # type: ignore[arg-type]
        assert broker.sent == [("ct_1", False)]
        assert pending.futures == []


# ------------------------------------------------------------------------------------ the router's prologue
@dataclass(frozen=True)
class Reading:
    intent: Intent
    confidence: float
    candidates: list[tuple[Intent, float]]


class CountingClassifier:
    threshold = 0.5

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict(self, texts: list[str]) -> list[Any]:
        self.calls.append(list(texts))
        return [Reading(Intent.INVOICE_REQUEST, min(0.99, 0.1 + len(t) / 200), []) for t in texts]


def test_given_a_batch_of_texts_when_classified_then_one_call_and_the_same_readings_as_one_by_one() -> None:
    texts = [
        "Please send me the invoice. Also, why was I charged twice?",
        "cancel my plan",
        "Hi,\n\nwhere is my receipt?\n\nThanks, Ann",
    ]
    classifier = CountingClassifier()

    batch = classify_messages(classifier, texts)

    assert len(classifier.calls) == 1
    one_by_one = [classify_message(CountingClassifier(), t) for t in texts]
    assert batch == one_by_one


async def test_given_two_contacts_of_one_customer_in_a_batch_when_facts_read_then_one_read_each() -> None:
    repo = InMemoryFacts([CustomerFacts(customer_id="cus_1", in_store=True, repeat_contacts=2)])
    deps = RouterDeps(pool=None, broker=None, classifier=None, diagnostics=None, inbox=None, facts=repo)  # type: ignore[arg-type]
    old = datetime.now(UTC) - timedelta(days=30)
    msgs = [
        contact("cus_1", "ct_1"),
        contact("cus_2", "ct_2"),
        contact("cus_1", "ct_3"),
        contact("cus_1", "ct_4", occurred_at=old),
        contact("cus_1", "ct_5"),
    ]

    facts = await batch_facts(deps, msgs)

    assert sorted(repo.loads) == ["cus_1", "cus_2"]  # one read per customer, not per contact
    repeats = [facts[m.message_id].repeat_contacts for m in msgs]
    # as if handled one at a time: the earlier contacts of the batch count, one outside the window not
    assert repeats == [2, 0, 3, 4, 4]


class ManyRowsPool:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        self.calls.append((query, args))
        return self.rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        raise AssertionError("a batch reads with one fetch")


async def test_given_many_customers_when_loaded_then_one_statement_and_unknown_ones_have_no_facts() -> None:
    row = {
        "customer_id": "cus_1",
        "store": json.dumps({"email": "a@example.com", "plan_tier": "pro", "risk_flags": {}}),
        "mirror": None,
        "disputes": "[]",
        "mirror_refunds": "[]",
        "ledger_refunds": "[]",
        "repeat_contacts": 1,
        "actions_today": "{}",
        "retries": "{}",
    }
    pool = ManyRowsPool([row])

    facts = await load_many(PostgresFacts(pool), ["cus_1", "cus_9", "cus_1"], contact_ids=["ct_1", "ct_2"])

    ((query, args),) = pool.calls
    assert query == FACTS_MANY_SQL
    assert args == (["cus_1", "cus_9"], ["ct_1", "ct_2"], 90, 7)
    assert facts["cus_1"].store_plan == "pro"
    assert facts["cus_1"].repeat_contacts == 1
    assert not facts["cus_9"].known
