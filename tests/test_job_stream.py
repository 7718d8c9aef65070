"""The job stream ws/jobs/<id>/?after=<seq> through the real ASGI stack (origin check, session
auth, routing) and the real channels_redis layer: stored events first, then live ones, each
exactly once and in order, gaps filled from the database; plus the project feed's job.updated."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from tests.jobs_helpers import make_project
from tests.ws_helpers import headers_for
from webapp.asgi import application
from webapp.jobs import consumers, services
from webapp.jobs.consumers import REPLAY_PAGE
from webapp.jobs.events import events_append
from webapp.jobs.models import Job, JobEvent, JobState

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


@pytest.fixture
def project(team_a):
    return make_project(team_a)


@pytest.fixture
def job(project, alice):
    return Job.objects.create(project=project, kind="probe", created_by=alice, queue="optimize", state=JobState.RUNNING)




def stream(job_id: int, headers, after: int | str | None = None) -> WebsocketCommunicator:
    query = "" if after is None else f"?after={after}"
    return WebsocketCommunicator(application, f"/ws/jobs/{job_id}/{query}", headers=headers)


def append_logs(job_id: int, count: int, *, each: bool = False) -> None:
    """`count` log lines numbered after the job's last seq, in one write or one write each."""
    start = Job.objects.get(id=job_id).last_seq
    lines = [("log", {"level": "info", "message": f"line {start + n}"}) for n in range(1, count + 1)]
    if each:
        for line in lines:
            events_append(job_id, [line])
    else:
        events_append(job_id, lines)


async def receive_until(communicator: WebsocketCommunicator, last_seq: int) -> tuple[list[dict], list[int]]:
    """Every event received until `last_seq` arrived, and the size of each frame."""
    events, frames = [], []
    while not events or events[-1]["seq"] < last_seq:
        message = await communicator.receive_json_from(timeout=TIMEOUT)
        assert message["type"] == "events"
        events += message["events"]
        frames.append(len(message["events"]))
    return events, frames


def seqs(events: list[dict]) -> list[int]:
    return [event["seq"] for event in events]


def replay(job_id: int, headers, *, after: int | str, last_seq: int) -> tuple[list[dict], list[int], bool]:
    """Connect, take every event up to `last_seq`, then check nothing more comes:
    (events, frame sizes, quiet afterwards)."""

    async def scenario():
        communicator = stream(job_id, headers, after=after)
        assert (await communicator.connect())[0]
        events, frames = await receive_until(communicator, last_seq)
        quiet = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return events, frames, quiet

    return async_to_sync(scenario)()


def test_it_replays_only_the_stored_events_after_the_given_seq(job, alice):
    append_logs(job.id, 10)
    events, _, quiet = replay(job.id, headers_for(alice), after=4, last_seq=10)
    assert seqs(events) == list(range(5, 11))
    assert [e["data"]["message"] for e in events] == [f"line {n}" for n in range(5, 11)]
    assert all(e["kind"] == "log" and isinstance(e["at"], float) for e in events)
    assert quiet


@pytest.mark.parametrize("after", ["²", "9" * 5000, "-3", "x"])
def test_an_after_that_is_no_number_replays_from_the_start(job, alice, after):
    append_logs(job.id, 3)  # "²".isdigit() and the 5000 digits passed, then int() refused them: the socket died
    events, _, quiet = replay(job.id, headers_for(alice), after=after, last_seq=3)
    assert seqs(events) == [1, 2, 3] and quiet


def test_it_sends_live_events_after_the_replay_exactly_once_and_in_order(job, alice):
    append_logs(job.id, 3)
    headers = headers_for(alice)

    async def scenario():
        communicator = stream(job.id, headers, after=0)
        connected, _ = await communicator.connect()
        assert connected
        replayed, _ = await receive_until(communicator, 3)
        await database_sync_to_async(append_logs)(job.id, 5, each=True)
        await database_sync_to_async(append_logs)(job.id, 4)
        live, _ = await receive_until(communicator, 12)
        quiet = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return replayed, live, quiet

    replayed, live, quiet = async_to_sync(scenario)()
    assert seqs(replayed) == [1, 2, 3]
    assert seqs(live) == list(range(4, 13))
    assert quiet  # nothing sent twice


def _write_during_replay(monkeypatch, job_id: int, *, before_reading: bool) -> None:
    """Append one event while the consumer replays: just before or just after it reads the store."""
    original = consumers._stored_after
    calls = []

    async def racing(job_id_: int, after: int) -> list[dict]:
        first = not calls
        calls.append(after)
        if first and before_reading:
            await database_sync_to_async(append_logs)(job_id, 1)
        events = await original(job_id_, after)
        if first and not before_reading:
            await database_sync_to_async(append_logs)(job_id, 1)
        return events

    monkeypatch.setattr(consumers, "_stored_after", racing)


def test_it_misses_no_event_written_just_after_the_store_was_read(monkeypatch, job, alice):
    """The group is joined before the history is read, so the doorbell of a write that just
    missed the replay still reaches this socket."""
    append_logs(job.id, 3)
    headers = headers_for(alice)
    _write_during_replay(monkeypatch, job.id, before_reading=False)
    events, _, quiet = replay(job.id, headers, after=0, last_seq=4)
    assert seqs(events) == [1, 2, 3, 4]
    assert quiet


def test_it_sends_once_an_event_both_replayed_and_rung(monkeypatch, job, alice):
    """A write between joining the group and reading the store is in the replay and in a
    doorbell: the socket gets it once."""
    append_logs(job.id, 3)
    headers = headers_for(alice)
    _write_during_replay(monkeypatch, job.id, before_reading=True)
    events, _, quiet = replay(job.id, headers, after=0, last_seq=4)
    assert seqs(events) == [1, 2, 3, 4]
    assert quiet  # the doorbell for seq 4 arrived too, and was not sent again


def test_it_sends_only_newer_events_after_a_reconnect_with_the_last_seen_seq(job, alice):
    append_logs(job.id, 5)
    headers = headers_for(alice)

    async def scenario():
        first = stream(job.id, headers, after=0)
        assert (await first.connect())[0]
        seen, _ = await receive_until(first, 5)
        await first.disconnect()
        # Written while no one listens: only the store has them.
        await database_sync_to_async(append_logs)(job.id, 3, each=True)
        again = stream(job.id, headers, after=seqs(seen)[-1])
        assert (await again.connect())[0]
        caught_up, _ = await receive_until(again, 8)
        await database_sync_to_async(append_logs)(job.id, 2)
        live, _ = await receive_until(again, 10)
        quiet = await again.receive_nothing(timeout=0.5)
        await again.disconnect()
        return seen, caught_up, live, quiet

    seen, caught_up, live, quiet = async_to_sync(scenario)()
    assert seqs(seen) == [1, 2, 3, 4, 5]
    assert seqs(caught_up) == [6, 7, 8]
    assert seqs(live) == [9, 10]
    assert quiet


def _write_behind_the_doorbell(job_id: int, count: int) -> None:
    """Events stored without a doorbell (as if its message was lost), then one appended normally."""
    job = Job.objects.get(id=job_id)
    for seq in range(job.last_seq + 1, job.last_seq + count + 1):
        JobEvent.objects.create(job_id=job_id, seq=seq, kind="log", data={"level": "info", "message": f"line {seq}"})
    Job.objects.filter(id=job_id).update(last_seq=job.last_seq + count)
    append_logs(job_id, 1)


def test_it_fills_a_gap_behind_a_doorbell_from_the_database(job, alice):
    append_logs(job.id, 2)
    headers = headers_for(alice)

    async def scenario():
        communicator = stream(job.id, headers, after=0)
        assert (await communicator.connect())[0]
        replayed, _ = await receive_until(communicator, 2)
        await database_sync_to_async(_write_behind_the_doorbell)(job.id, 4)  # seq 3..6 silent, 7 rings
        filled, _ = await receive_until(communicator, 7)
        quiet = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return replayed, filled, quiet

    replayed, filled, quiet = async_to_sync(scenario)()
    assert seqs(replayed) == [1, 2]
    assert seqs(filled) == [3, 4, 5, 6, 7]
    assert [e["data"]["message"] for e in filled] == [f"line {n}" for n in range(3, 8)]
    assert quiet


def test_it_sends_a_finished_jobs_final_state_at_once(job, alice):
    append_logs(job.id, 3)
    events_append(job.id, [("state", {"state": "succeeded", "result": {"ok": True}})], state=JobState.SUCCEEDED, progress=1.0)
    headers = headers_for(alice)

    async def scenario():
        communicator = stream(job.id, headers)  # no ?after: from the start
        assert (await communicator.connect())[0]
        message = await communicator.receive_json_from(timeout=1)
        await communicator.disconnect()
        return message

    message = async_to_sync(scenario)()
    assert seqs(message["events"]) == [1, 2, 3, 4]
    assert message["events"][-1]["kind"] == "state"
    assert message["events"][-1]["data"] == {"state": "succeeded", "result": {"ok": True}}


def _refused(job_id: int, headers) -> tuple[bool, bool]:
    async def scenario():
        communicator = stream(job_id, headers, after=0)
        connected, _ = await communicator.connect()
        # A new event for the job must not reach the refused socket either.
        await database_sync_to_async(append_logs)(job_id, 1)
        nothing = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return connected, nothing

    return async_to_sync(scenario)()


def test_it_refuses_a_user_of_another_team_before_any_frame(job, charlie, team_c):
    append_logs(job.id, 2)
    assert _refused(job.id, headers_for(charlie)) == (False, True)


def test_it_refuses_an_anonymous_user_before_any_frame(job):
    append_logs(job.id, 2)
    assert _refused(job.id, headers_for(None)) == (False, True)


def test_it_refuses_a_foreign_origin_even_with_a_valid_session(job, alice):
    append_logs(job.id, 2)
    headers = headers_for(alice, origin=(b"origin", b"http://evil.example"))
    assert _refused(job.id, headers) == (False, True)


def test_it_refuses_an_unknown_job(alice, team_a):
    headers = headers_for(alice)

    async def scenario():
        communicator = stream(999_999, headers, after=0)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_it_replays_a_long_history_completely_in_pages(job, alice):
    total = 2 * REPLAY_PAGE + 500
    append_logs(job.id, total)
    events, frames, quiet = replay(job.id, headers_for(alice), after=0, last_seq=total)
    assert seqs(events) == list(range(1, total + 1))
    assert frames == [REPLAY_PAGE, REPLAY_PAGE, 500]
    assert events[-1]["data"]["message"] == f"line {total}"
    assert quiet


# --- the project feed -------------------------------------------------------------------------


def project_feed(project_id: int, headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/projects/{project_id}/feed/", headers=headers)


def test_it_announces_a_jobs_state_and_progress_changes_on_the_project_feed(job, bob):
    headers = headers_for(bob)

    async def scenario():
        communicator = project_feed(job.project_id, headers)
        assert (await communicator.connect())[0]
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
        await database_sync_to_async(events_append)(job.id, [("progress", {"progress": 0.25})], progress=0.25)
        progressed = await communicator.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(events_append)(
            job.id, [("state", {"state": "succeeded"})], state=JobState.SUCCEEDED, progress=1.0
        )
        finished = await communicator.receive_json_from(timeout=TIMEOUT)
        await communicator.disconnect()
        return progressed, finished

    progressed, finished = async_to_sync(scenario)()
    assert progressed["type"] == "job.updated"
    assert progressed["job"]["id"] == job.id
    assert (progressed["job"]["state"], progressed["job"]["progress"]) == ("running", 0.25)
    assert finished["type"] == "job.updated"
    assert (finished["job"]["state"], finished["job"]["progress"]) == ("succeeded", 1.0)


def test_it_keeps_the_project_feed_quiet_for_log_lines(job, bob):
    headers = headers_for(bob)

    async def scenario():
        communicator = project_feed(job.project_id, headers)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=TIMEOUT)  # hello
        await database_sync_to_async(append_logs)(job.id, 5, each=True)
        quiet = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return quiet

    assert async_to_sync(scenario)()


def _feed_after(job, user, change) -> dict:
    """The first project-feed message after `change()` runs."""
    headers = headers_for(user)

    async def scenario():
        communicator = project_feed(job.project_id, headers)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=TIMEOUT)  # hello
        await database_sync_to_async(change)()
        message = await communicator.receive_json_from(timeout=TIMEOUT)
        await communicator.disconnect()
        return message

    return async_to_sync(scenario)()


def test_it_announces_a_job_that_a_worker_finished_on_the_project_feed(job, bob):
    Job.objects.filter(id=job.id).update(lease_owner="w@host:1:t")
    message = _feed_after(
        job, bob, lambda: services.job_finish(job_id=job.id, owner="w@host:1:t", state=JobState.SUCCEEDED, result={})
    )
    assert message["type"] == "job.updated"
    assert (message["job"]["id"], message["job"]["state"], message["job"]["progress"]) == (job.id, "succeeded", 1.0)


def test_it_announces_a_cancelled_queued_job_on_the_project_feed(job, bob):
    Job.objects.filter(id=job.id).update(state=JobState.QUEUED)
    message = _feed_after(job, bob, lambda: services.job_cancel(job=job))
    assert message["type"] == "job.updated"
    assert (message["job"]["id"], message["job"]["state"]) == (job.id, "cancelled")
