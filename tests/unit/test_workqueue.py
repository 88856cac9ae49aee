import asyncio

import pytest

from commerce_jobs.workqueue import WorkQueue


async def drain(queue: WorkQueue[str]) -> list[str]:
    keys = []
    while len(queue):
        key = await queue.get()
        keys.append(key)
        queue.done(key)
    return keys


def test_a_key_added_many_times_is_processed_once() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ["a", "b", "a", "a", "b"]:
            queue.add(key)
        return await drain(queue)

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_key_changed_while_processed_is_processed_again_afterwards() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")  # an event arrives while a worker holds the key
        assert len(queue) == 0  # ... so no second worker may take it now
        queue.done(key)
        return await drain(queue)

    assert asyncio.run(scenario()) == ["a"]


def test_retries_back_off_exponentially_and_forget_resets() -> None:
    async def scenario() -> list[float]:
        queue: WorkQueue[str] = WorkQueue(base_delay=1, max_delay=5)
        delays = [queue.retry("a") for _ in range(5)]
        queue.forget("a")
        delays.append(queue.retry("a"))
        queue.discard("a")
        return delays

    assert asyncio.run(scenario()) == [1, 2, 4, 5, 5, 1]


def test_add_after_keeps_the_earliest_wakeup() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", 0.05)
        queue.add_after("a", 60)  # later: ignored, the earlier wake-up stays
        key = await asyncio.wait_for(queue.get(), timeout=5)
        queue.done(key)
        return [key]

    assert asyncio.run(scenario()) == ["a"]


@pytest.mark.parametrize("delay", [0, -1])
def test_add_after_without_delay_adds_at_once(delay: float) -> None:
    async def scenario() -> int:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", delay)
        return len(queue)

    assert asyncio.run(scenario()) == 1
