import asyncio
from typing import Any

from commerce_jobs.events import EventRecorder

JOB = {"metadata": {"name": "import-solr", "namespace": "shop"}}


def test_every_recorded_event_is_posted_by_the_time_the_recorder_stops() -> None:
    posted: list[str] = []

    async def scenario() -> None:
        async def post(obj: dict[str, Any], kind: str, reason: str, message: str, event_type: str) -> None:
            posted.append(reason)

        recorder = EventRecorder(post)
        recorder.start()
        for reason in ("Started", "Finished", "DependentsCreated"):
            recorder.record(JOB, "CommerceJob", reason, "")
        await recorder.stop()

    asyncio.run(scenario())
    assert sorted(posted) == ["DependentsCreated", "Finished", "Started"]


def test_recording_never_waits_for_the_apiserver_and_drops_past_its_bound() -> None:
    posted: list[str] = []

    async def scenario() -> int:
        release = asyncio.Event()

        async def slow_post(obj: dict[str, Any], kind: str, reason: str, message: str, event_type: str) -> None:
            await release.wait()
            posted.append(reason)

        recorder = EventRecorder(slow_post, senders=1, max_pending=2)
        recorder.start()
        for i in range(5):
            recorder.record(JOB, "CommerceJob", f"E{i}", "")  # returns at once though the post blocks
        dropped = recorder.dropped
        release.set()
        await recorder.stop()
        return dropped

    dropped = asyncio.run(scenario())
    assert dropped == 3
    assert posted == ["E0", "E1"]


def test_an_event_that_cannot_be_posted_does_not_stop_the_others() -> None:
    posted: list[str] = []

    async def post(obj: dict[str, Any], kind: str, reason: str, message: str, event_type: str) -> None:
        if reason == "Broken":
            raise RuntimeError("apiserver said no")
        posted.append(reason)

    async def scenario() -> None:
        recorder = EventRecorder(post, senders=1)
        recorder.start()
        recorder.record(JOB, "CommerceJob", "Broken", "")
        recorder.record(JOB, "CommerceJob", "Finished", "")
        await recorder.stop()

    asyncio.run(scenario())
    assert posted == ["Finished"]


def test_a_held_event_is_replaced_by_a_later_event_of_the_same_object_and_posted_otherwise() -> None:
    posted: list[tuple[str, str]] = []

    async def scenario() -> None:
        released = asyncio.Event()

        async def post(obj: dict[str, Any], kind: str, reason: str, message: str, event_type: str) -> None:
            posted.append((obj["metadata"]["name"], reason))
            if obj["metadata"]["name"] == "long":
                released.set()

        recorder = EventRecorder(post)
        recorder.start()
        short, long = (_job(name) for name in ("short", "long"))
        recorder.record(short, "CommerceJob", "Started", "attempt 1", hold=60)
        recorder.record(long, "CommerceJob", "Started", "attempt 1", hold=0.05)
        recorder.record(short, "CommerceJob", "Finished", "exit code 0")  # within its Started's hold
        assert recorder.pending == 2
        await asyncio.wait_for(released.wait(), 10)  # the long one's hold ran out: posted alone
        recorder.record(_job("later"), "CommerceJob", "Started", "attempt 1", hold=60)
        await recorder.stop()  # what is still held is posted, not lost

    asyncio.run(scenario())
    assert sorted(posted) == [("later", "Started"), ("long", "Started"), ("short", "Finished")]


def _job(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}"}}
