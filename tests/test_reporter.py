"""JobReporter against the database: what a chatty pipeline says becomes a few batched writes,
nothing that matters is lost, and cancels and lost leases are noticed quickly.

The reporter writes from its own thread (its own database connection), so these tests need
committed data: transactional database."""

import time
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from tests.jobs_helpers import events, make_project
from tests.servers import wait_for
from webapp.jobs import services
from webapp.jobs.events import events_append
from webapp.jobs.models import Job, JobState
from workers import progress as progress_module
from workers.progress import MAX_LOG_LINES_PER_FLUSH, JobReporter

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = "test@host:1234:task-1"
NEVER = 3600  # a flush interval that does not tick during a test: only close() writes


@pytest.fixture
def job(team_a, alice):
    project = make_project(team_a)
    return Job.objects.create(
        project=project, kind="probe", created_by=alice, queue="optimize", state=JobState.RUNNING,
        lease_owner=OWNER, lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS),
    )


@pytest.fixture
def reporter(job):
    """Start reporters for the job; each is closed at the end of the test if the test did not."""
    started: list[JobReporter] = []

    def start(**options) -> JobReporter:
        started.append(JobReporter(job.id, OWNER, **options).start())
        return started[-1]

    yield start
    for each in started:
        each._stop.set()
        each._thread.join(timeout=10)


def data(job_id: int, kind: str) -> list[dict]:
    return [event.data for event in events(job_id, kind)]


def test_it_averages_ten_thousand_metric_points_into_a_few_events(job, reporter):
    r = reporter()
    for step in range(1, 10_001):
        r.metric("loss", float(step), step=step)
    r.close()
    points = data(job.id, "metric")
    assert 1 <= len(points) <= 5
    assert sum(p.get("samples", 1) for p in points) == 10_000
    assert sum(p["value"] * p.get("samples", 1) for p in points) == pytest.approx(sum(range(1, 10_001)))
    assert points[-1]["step"] == 10_000
    assert [p["step"] for p in points] == sorted(p["step"] for p in points)
    assert {p["name"] for p in points} == {"loss"}


def test_it_writes_a_handful_of_progress_events_for_100000_calls(job, reporter):
    r = reporter()
    for n in range(1, 100_001):
        r.progress(n / 100_000)
    r.close()
    values = [d["progress"] for d in data(job.id, "progress")]
    assert 1 <= len(values) <= 20
    assert values == sorted(values)
    assert values[-1] == 1.0
    assert Job.objects.get(id=job.id).progress == 1.0


def test_it_ignores_progress_below_the_current_value(job, reporter):
    r = reporter(progress=0.2, flush_seconds=NEVER)
    r.progress(0.1)  # below where the job already is (e.g. a resumed attempt)
    r.progress(0.6)
    r.progress(0.3)
    r.close()
    assert [d["progress"] for d in data(job.id, "progress")] == [0.6]
    assert Job.objects.get(id=job.id).progress == 0.6


def test_it_writes_no_progress_event_when_progress_never_rises(job, reporter):
    r = reporter(progress=0.5, flush_seconds=NEVER)
    r.progress(0.5)
    r.progress(0.25)
    r.close()
    assert data(job.id, "progress") == []
    assert Job.objects.get(id=job.id).last_seq == 0


def test_it_keeps_every_log_line_in_order(job, reporter):
    batch = MAX_LOG_LINES_PER_FLUSH // 2
    with mock.patch.object(progress_module, "events_append", wraps=events_append) as append:
        r = reporter()
        for start in range(0, 5000, batch):
            for n in range(start, start + batch):
                r.log(f"line {n}")
            # Let this batch be written before the next: at most one batch per flush window.
            wait_for(lambda: Job.objects.get(id=job.id).last_seq >= start + batch, timeout=10, what="a flush")
        r.close()
    lines = data(job.id, "log")
    assert [line["message"] for line in lines] == [f"line {n}" for n in range(5000)]
    assert {line["level"] for line in lines} == {"info"}
    assert append.call_count <= 10  # batched: a write per flush, not one per line


def test_it_warns_how_many_lines_it_dropped_in_one_flush_window(job, reporter):
    r = reporter(flush_seconds=NEVER)
    for n in range(MAX_LOG_LINES_PER_FLUSH + 345):
        r.log(f"line {n}", level="debug")
    r.close()
    lines = data(job.id, "log")
    assert len(lines) == MAX_LOG_LINES_PER_FLUSH + 1
    assert [line["message"] for line in lines[:-1]] == [f"line {n}" for n in range(MAX_LOG_LINES_PER_FLUSH)]
    assert lines[-1]["level"] == "warning"
    assert lines[-1]["message"].startswith("345 log lines dropped")


def test_it_records_stage_changes_as_events_and_on_the_job(job, reporter):
    r = reporter(stage="", flush_seconds=NEVER)
    r.stage("loading")
    r.stage("loading")  # no change: no event
    r.stage("training")
    r.close()
    assert [d["stage"] for d in data(job.id, "stage")] == ["loading", "training"]
    assert Job.objects.get(id=job.id).stage == "training"


def test_it_updates_the_jobs_stage_while_it_runs(job, reporter):
    r = reporter()
    r.stage("measuring")
    wait_for(lambda: Job.objects.get(id=job.id).stage == "measuring", timeout=5, what="the stage to be written")
    r.close()


def test_it_persists_the_latest_checkpoint(job, reporter):
    r = reporter()
    r.checkpoint({"round": 1})
    r.checkpoint({"round": 2})
    wait_for(lambda: Job.objects.get(id=job.id).checkpoint == {"round": 2}, timeout=5, what="the checkpoint")
    r.checkpoint({"round": 3})
    r.close()
    assert Job.objects.get(id=job.id).checkpoint == {"round": 3}


def test_it_notices_a_cancel_request_within_a_second_and_a_half(job, reporter):
    r = reporter()
    time.sleep(0.3)
    assert not r.cancelled()
    services.job_cancel(job=job)
    asked = time.monotonic()
    wait_for(r.cancelled, timeout=5, what="the reporter to see the cancel", interval=0.02)
    assert time.monotonic() - asked <= 1.5
    assert not r.lease_lost
    r.close()


def test_it_notices_a_lost_lease_within_the_lease_time(job, reporter):
    r = reporter()
    Job.objects.filter(id=job.id).update(lease_owner="another@host:1:task-2")  # taken over
    taken = time.monotonic()
    wait_for(r.cancelled, timeout=settings.JOB_LEASE_SECONDS + 2, what="the reporter to lose the lease", interval=0.05)
    assert time.monotonic() - taken <= settings.JOB_LEASE_SECONDS
    assert r.lease_lost
    r.close()


def test_it_renews_the_lease_while_it_runs(job, reporter):
    first = Job.objects.get(id=job.id).lease_expires_at
    r = reporter()
    wait_for(lambda: Job.objects.get(id=job.id).lease_expires_at > first, timeout=settings.JOB_LEASE_SECONDS,
             what="the lease to be renewed", interval=0.05)
    assert not r.cancelled()
    r.close()


def test_it_flushes_everything_still_buffered_on_close(job, reporter):
    r = reporter(flush_seconds=NEVER, metric_window_seconds=NEVER)
    r.stage("training")
    r.log("one")
    r.log("two", level="warning")
    r.metric("accuracy", 0.5, step=1)
    r.metric("accuracy", 0.7, step=2)
    r.progress(0.4)
    r.checkpoint({"epoch": 2})
    time.sleep(0.3)
    assert Job.objects.get(id=job.id).last_seq == 0  # nothing written yet
    r.close()
    stored = [(event.kind, event.data) for event in events(job.id)]
    assert stored == [
        ("stage", {"stage": "training"}),
        ("log", {"level": "info", "message": "one"}),
        ("log", {"level": "warning", "message": "two"}),
        ("metric", {"name": "accuracy", "value": pytest.approx(0.6), "step": 2, "samples": 2}),
        ("progress", {"progress": 0.4}),
    ]
    saved = Job.objects.get(id=job.id)
    assert (saved.stage, saved.progress, saved.checkpoint, saved.last_seq) == ("training", 0.4, {"epoch": 2}, 5)


def test_it_keeps_what_it_could_not_write_and_writes_it_on_the_next_tick(job, reporter):
    failures = iter([OperationalError("database is locked")])

    def flaky(*args, **kwargs):
        for failure in failures:
            raise failure
        return events_append(*args, **kwargs)

    with mock.patch.object(progress_module, "events_append", side_effect=flaky) as append:
        r = reporter()
        r.log("survives a failed write")
        r.progress(0.5)
        wait_for(lambda: append.call_count >= 2, timeout=5, what="a second write")
        r.close()
    assert [d["message"] for d in data(job.id, "log")] == ["survives a failed write"]
    assert [d["progress"] for d in data(job.id, "progress")] == [0.5]
    assert Job.objects.get(id=job.id).progress == 0.5
