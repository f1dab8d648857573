"""Operators' tools (issue 24) without a stack: which actions the money switch holds, the breaker's
arithmetic, the switch's short cache, the dead-letter views and the CLI's new subcommands."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from schemas import Action
from schemas.messages import DeadLetterPayload, DeadLetterRecordedV1
from tierline import deadletters, switches
from tierline.billing.policy import PolicyEngine, PolicyError
from tierline.cli import build_parser
from tierline.messaging import DeadLetterRouter
from tierline.safetext import digest


@pytest.mark.parametrize(
    ("action", "actor", "increase", "held"),
    [
        (Action.REFUND, "ai", 0.0, True),
        (Action.RETRY_PAYMENT, "system", 0.0, True),
        (Action.REFUND, "selfheal", 0.0, True),
        (Action.CHANGE_PLAN, "ai", 20.0, True),  # a plan change that charges more
        (Action.CHANGE_PLAN, "ai", 0.0, False),  # a downgrade moves no money to us
        (Action.REFUND, "human", 0.0, False),  # people act while automation is paused
        (Action.SEND_INVOICE, "ai", 0.0, False),
        (Action.SEND_UPDATE_CARD_LINK, "system", 0.0, False),
        (Action.CANCEL_SUBSCRIPTION, "ai", 0.0, False),
    ],
)
def test_given_an_action_when_classified_then_only_automatic_money_actions_are_held(
    action: Action, actor: str, increase: float, held: bool
) -> None:
    assert switches.is_money_action(action, actor=actor, price_increase_usd=increase) is held


def test_given_the_hours_refunds_when_one_more_would_pass_the_limit_then_the_breaker_trips() -> None:
    assert not switches.breaker_trips(Decimal("2451.00"), 49.0, Decimal("2500"))  # exactly at the limit
    assert switches.breaker_trips(Decimal("2451.01"), 49.0, Decimal("2500"))
    assert not switches.breaker_trips(Decimal("99999"), 49.0, None)  # no breaker configured


def test_given_the_shipped_policy_when_loaded_then_it_has_a_breaker_and_a_bad_one_is_refused(
    tmp_path: Any,
) -> None:
    assert PolicyEngine.from_yaml().rules.breaker.refunds_per_hour_usd == Decimal("2500.00")
    text = (PolicyEngine.from_yaml.__globals__["DEFAULT_POLICY_PATH"]).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("refunds_per_hour_usd: 2500.00", "refunds_per_hour_usd: -5"))
    with pytest.raises(PolicyError):
        PolicyEngine.from_yaml(bad)


class SwitchPool:
    """Answers the switch's one read, counting reads."""

    def __init__(self) -> None:
        self.paused = False
        self.reads = 0

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any]:
        self.reads += 1
        return {"paused": self.paused, "reason": "r", "actor": "a", "details": {}, "changed_at": None}


async def test_given_a_pause_when_the_executor_reads_the_switch_then_it_sees_it_within_the_cache_time() -> (
    None
):
    pool, now = SwitchPool(), [100.0]
    switch = switches.MoneySwitch(pool, clock=lambda: now[0])  # type: ignore[arg-type]
    assert not (await switch.state()).paused
    pool.paused = True
    now[0] += switch.TTL_S / 2
    assert not (await switch.state()).paused
    assert pool.reads == 1
    now[0] += switch.TTL_S
    assert (await switch.state()).paused
    assert pool.reads == 2
    assert switch.TTL_S <= 2.0


def dead_letter(
    topic: str, offset: int, *, value: str = '{"a": 1}', error_type: str = "RuntimeError", **kw: Any
) -> Any:
    return DeadLetterRecordedV1.build(
        DeadLetterPayload(
            original_topic=topic,
            partition=0,
            offset=offset,
            key="cus_1",
            value=value,
            headers={"message-id": "m"},
            consumer="svc",
            error_type=error_type,
            error="boom",
            error_kind="handler_error",
            value_sha256=digest(value.encode()),
            **kw,
        ),
        contact_id="c",
        customer_id="cus_1",
    )


def test_given_dead_letters_when_counted_then_per_topic_and_error_once_each_with_replays() -> None:
    a, b, c = dead_letter("t.one", 1), dead_letter("t.one", 2), dead_letter("t.two", 1, error_type="KeyError")
    groups = deadletters.count_by_topic_and_error([a, b, a, c], {str(a.message_id)})
    assert [(g.original_topic, g.error, g.count, g.replayed) for g in groups] == [
        ("t.one", "handler_error:RuntimeError", 2, 1),
        ("t.two", "handler_error:KeyError", 1, 0),
    ]


def test_given_an_id_prefix_when_found_then_one_match_or_not_found() -> None:
    a, b = dead_letter("t", 1), dead_letter("t", 2)
    assert deadletters.find([a, b], str(a.message_id)[:12]) is a
    with pytest.raises(deadletters.DeadLetterNotFound):
        deadletters.find([a, b], "short")
    with pytest.raises(deadletters.DeadLetterNotFound):
        deadletters.find([a, b], "")


def test_given_a_copy_that_is_not_the_original_when_replay_checked_then_refused_with_why() -> None:
    assert deadletters.replayable(dead_letter("t", 1)) is None
    assert "first part" in str(
        deadletters.replayable(dead_letter("t", 1, value_truncated=True, value_bytes=99999))
    )
    changed = dead_letter("t", 1).model_copy(deep=True)
    object.__setattr__(changed.payload, "value", '{"a": 2}')
    assert "not the original" in str(deadletters.replayable(changed))
    assert "never replayed" in str(deadletters.replayable(dead_letter(deadletters.TOPIC, 1)))


def test_given_the_cli_when_parsed_then_pause_resume_and_deadletter_commands_exist() -> None:
    parser = build_parser()
    args = parser.parse_args(["pause", "money", "--reason", "incident 42", "--by", "ana"])
    assert (args.command, args.what, args.reason, args.by) == ("pause", "money", "incident 42", "ana")
    assert parser.parse_args(["pause", "status"]).what == "status"
    assert parser.parse_args(["resume", "money"]).command == "resume"
    assert parser.parse_args(["deadletter", "replay", "abcdef12"]).id == "abcdef12"
    assert parser.parse_args(["deadletter", "list", "--json"]).json
    with pytest.raises(SystemExit):
        parser.parse_args(["resume", "everything"])


class AttemptsPool:
    """consumer_attempts in a dict: what the router writes before, during and after handling."""

    def __init__(self, rows: dict[tuple[str, str, int, int], int] | None = None) -> None:
        self.rows = dict(rows or {})
        self.writes = 0

    async def execute(self, sql: str, *args: Any) -> str:
        return "DELETE 0"

    async def fetch(self, sql: str, consumer: str) -> list[dict[str, Any]]:
        return [{"topic": t, "partition": p, "offset": o} for (c, t, p, o) in self.rows if c == consumer]

    async def fetchval(self, sql: str, consumer: str, topic: str, partition: int, offset: int) -> int:
        self.writes += 1
        key = (consumer, topic, partition, offset)
        self.rows[key] = self.rows.get(key, 0) + 1
        return self.rows[key]

    async def executemany(self, sql: str, args: list[tuple[str, str, int, int]]) -> None:
        for key in args:
            self.rows.pop(key, None)


class Raw:
    def __init__(self, offset: int, partition: int = 0) -> None:
        self.topic, self.partition, self.offset = "t", partition, offset


async def test_given_attached_counts_when_records_arrive_then_only_first_and_known_ones_are_written() -> None:
    pool = AttemptsPool({("svc", "t", 0, 5): 2})  # offset 5 took a process down twice already
    router = DeadLetterRouter("svc")
    await router.attach(pool)  # type: ignore[arg-type]

    assert await router._before(Raw(5)) == 3  # counted before its handler runs again
    assert await router._before(Raw(6)) == 0  # the usual message: no write
    assert await router._before(Raw(0, partition=1)) == 1  # the first one this process reads on a partition
    assert pool.writes == 2
    await router._forget([Raw(5), Raw(6), Raw(0, partition=1)])
    assert pool.rows == {}  # committed: the rows go


async def test_given_a_record_that_crashed_max_times_when_read_again_then_dead_lettered_unhandled() -> None:
    pool = AttemptsPool({("svc", "t", 0, 5): 3})
    router = DeadLetterRouter("svc")
    await router.attach(pool)  # type: ignore[arg-type]
    given_up: list[tuple[Any, BaseException, int]] = []

    async def give_up(raw: Any, error: BaseException, attempts: int) -> None:
        given_up.append((raw, error, attempts))

    router.give_up = give_up  # type: ignore[method-assign]
    started = await router._before(Raw(5))
    assert await router._crashed_too_often(Raw(5), started)
    [(raw, error, attempts)] = given_up
    assert (raw.offset, type(error).__name__, attempts) == (5, "ConsumerCrashed", 3)


def test_given_a_contact_held_by_the_pause_when_triaged_then_a_person_has_it_within_four_hours() -> None:
    from datetime import UTC, datetime, timedelta

    from schemas import EscalationReason
    from services.tier3_handoff import domain

    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    t = domain.triage(
        EscalationReason.MONEY_PAUSED, plan="pro", amount_usd=49.0, contact_started_at=now, now=now
    )
    assert (t.priority, t.queue) == (2, domain.Queue.BILLING)
    assert t.sla_due_at - now == timedelta(hours=4)
    assert "personally" not in domain.NEXT_FOR_REASON[EscalationReason.MONEY_PAUSED]
