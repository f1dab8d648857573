"""A service whose consumer group does not form leaves it and joins again, a bounded number of times."""

from __future__ import annotations

import asyncio

import pytest

from tierline.runtime import Service, awaiting_tasks
from tierline.settings import InfraSettings

pytestmark = pytest.mark.unit


class JoinThatHangs:
    """A broker whose first `hangs` starts never finish (a join round that never completes)."""

    def __init__(self, hangs: int) -> None:
        self.hangs = hangs
        self.starts = 0
        self.stops = 0

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.hangs:
            await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stops += 1


def service(broker: JoinThatHangs, attempts: int = 3) -> Service:
    settings = InfraSettings(
        broker_join_timeout_s=0.2, broker_join_attempts=attempts, stripe_api_base="http://127.0.0.1:9"
    )
    svc = Service.create("joiner", settings, needs_postgres=False)
    svc.broker = broker  # type: ignore[assignment]
    return svc


async def test_given_a_join_that_hangs_once_when_starting_then_group_is_left_and_joined_again() -> None:
    broker = JoinThatHangs(hangs=1)
    svc = service(broker)
    await svc.start(serve_http=False)
    assert (broker.starts, broker.stops, svc.started) == (2, 1, True)


async def test_given_a_join_that_always_hangs_when_starting_then_a_clear_error_after_the_attempts() -> None:
    broker = JoinThatHangs(hangs=10)
    svc = service(broker, attempts=2)
    with pytest.raises(TimeoutError, match=r"joiner: consumer groups did not form in 2 x 0 s"):
        await svc.start(serve_http=False)
    assert (broker.starts, broker.stops, svc.started) == (2, 2, False)


async def test_given_a_healthy_join_when_starting_then_started_once_without_leaving() -> None:
    broker = JoinThatHangs(hangs=0)
    svc = service(broker)
    await svc.start(serve_http=False)
    assert (broker.starts, broker.stops) == (1, 0)


async def test_awaiting_tasks_names_where_each_task_waits() -> None:
    async def parked() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(parked(), name="parked-task")
    await asyncio.sleep(0)
    try:
        lines = [line for line in awaiting_tasks() if line.startswith("parked-task:")]
        assert len(lines) == 1
        assert "test_runtime_start.py:" in lines[0]
        assert "locks.py:" in lines[0]  # down to the Event it waits on
    finally:
        task.cancel()
