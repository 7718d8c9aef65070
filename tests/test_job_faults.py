"""Jobs survive faults: workers killed with SIGKILL, Redis restarted empty, a broker that
delivers a task twice, a job that ignores its cancel. Each test runs its own real workers."""

import signal

import pytest

from tests.archive_builders import colour_classes, make_zip
from tests.helpers import uploaded
from tests.jobs_helpers import events, make_project, states, wait_done, wait_state
from tests.servers import start_worker, wait_for
from webapp.celery import app as celery_app
from webapp.datasets import services as datasets
from webapp.jobs import services
from webapp.jobs.kinds import KINDS
from webapp.jobs.models import Job, JobState
from workers.runner import scratch_dir

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def workers(child_env, log_dir):
    started = []

    def start(name: str, **env):
        worker = start_worker({**child_env, **env}, log_dir, name=name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(signal.SIGKILL if worker.alive() else signal.SIGTERM)


def submit(alice, team_a, **params):
    project = team_a.projects.first() or make_project(team_a)
    job, _ = services.job_submit(project=project, user=alice, kind="probe", params=params)
    return job


def wait_rounds(job_id: int, rounds: int) -> None:
    def done() -> bool:
        checkpoint = Job.objects.get(id=job_id).checkpoint or {}
        return len(checkpoint.get("cpu", [])) >= rounds

    wait_for(done, timeout=120, what=f"job {job_id} to checkpoint {rounds} rounds", interval=0.1)


def test_it_resumes_once_from_the_checkpoint_after_a_sigkill(workers, alice, team_a):
    first = workers("first")
    job = submit(alice, team_a, rounds=12, seconds_per_round=0.25, matrix_size=64)
    wait_rounds(job.id, 3)
    assert Job.objects.get(id=job.id).worker_host.startswith("first@")
    first.stop(signal.SIGKILL)
    workers("second")
    done = wait_done(job.id, timeout=180)
    assert done.state == JobState.SUCCEEDED, done.error_detail
    assert done.attempts == 2 and done.worker_host.startswith("second@")
    assert states(job.id) == ["queued", "running", "queued", "running", "succeeded"]
    assert any("Resuming after round" in e.data["message"] for e in events(job.id, "log"))
    assert all(len(rounds) == 12 for rounds in done.checkpoint.values())
    progress = [e.data["progress"] for e in events(job.id, "progress")]
    assert progress == sorted(progress), "progress went back"


def test_it_fails_with_worker_lost_instead_of_looping(workers, alice, team_a):
    first = workers("first")
    job = submit(alice, team_a, rounds=400, seconds_per_round=0.25, matrix_size=64)
    wait_rounds(job.id, 2)
    first.stop(signal.SIGKILL)
    second = workers("second")
    wait_for(lambda: Job.objects.filter(id=job.id, attempts=2, state=JobState.RUNNING).exists(), timeout=120,
             what="the second attempt")
    second.stop(signal.SIGKILL)
    workers("third")
    done = wait_done(job.id, timeout=120)
    assert done.state == JobState.FAILED and done.attempts == 2
    assert "was lost" in done.error and "cannot be resumed" in done.error


def test_it_requeues_queued_jobs_that_a_redis_restart_lost(workers, alice, team_a, redis_server):
    jobs = [submit(alice, team_a, rounds=2, seconds_per_round=0.1, matrix_size=32) for _ in range(3)]
    wait_for(lambda: Job.objects.filter(state=JobState.QUEUED, enqueued_at__isnull=False).count() == 3, timeout=10,
             what="jobs enqueued")
    redis_server.stop()
    for path in redis_server.data_dir.rglob("*"):  # the broker comes back empty
        if path.is_file():
            path.unlink()
    redis_server.start()
    workers("after-restart")
    for job in jobs:
        done = wait_done(job.id, timeout=120)
        assert done.state == JobState.SUCCEEDED and done.attempts == 1
        assert states(job.id) == ["queued", "running", "succeeded"]


def test_it_runs_a_job_once_when_the_broker_delivers_it_twice(workers, alice, team_a):
    # A visibility timeout shorter than the job makes Redis hand the task to the other worker
    # mid-run; the test also sends the task again itself, so that a second delivery surely comes
    # while the job runs, however loaded the machine is. Each is stored in the job's own log.
    early = workers("early", BROKER_VISIBILITY_TIMEOUT="2")
    job = submit(alice, team_a, rounds=40, seconds_per_round=0.25, matrix_size=64)
    wait_state(job.id, JobState.RUNNING)
    workers("late", BROKER_VISIBILITY_TIMEOUT="2")
    job.refresh_from_db()
    celery_app.send_task(KINDS["probe"].task_name, args=[job.id], queue=job.queue, task_id=job.task_id)
    done = wait_done(job.id, timeout=180)
    assert done.state == JobState.SUCCEEDED and done.attempts == 1
    assert states(job.id) == ["queued", "running", "succeeded"]
    said = [event.data["message"] for event in events(job.id, "log")]
    assert any("was ignored: the job is already running" in message for message in said), early.log()


def test_it_stops_by_force_a_job_that_ignores_its_cancel(workers, alice, team_a):
    # One 8192² matmul takes this CPU several seconds, far past a one-second grace period,
    # so the cooperative flag (checked between matmuls) is not seen in time.
    workers("stubborn", JOB_CANCEL_GRACE_SECONDS="1")
    job = submit(alice, team_a, rounds=50, seconds_per_round=30, matrix_size=8192)
    wait_state(job.id, JobState.RUNNING)
    # Cancelled once its first matmul is under way: earlier (torch still importing on a loaded
    # host) the step would see the flag in time, and stop by itself.
    wait_for(lambda: any("Measuring" in event.data.get("message", "") for event in events(job.id, "log")),
             timeout=60, what="the first matmul to start", interval=0.1)
    services.job_cancel(job=job)
    done = wait_done(job.id, timeout=30)
    assert done.state == JobState.CANCELLED
    assert "by force" in done.error_detail


def test_it_sends_a_job_submitted_while_the_broker_was_down(workers, alice, team_a, redis_server):
    redis_server.stop()
    try:
        job = submit(alice, team_a, rounds=2, seconds_per_round=0.1, matrix_size=32)
    finally:
        redis_server.start()
    assert Job.objects.get(id=job.id).enqueued_at is None
    workers("after-outage")
    done = wait_done(job.id, timeout=120)
    assert done.state == JobState.SUCCEEDED and done.attempts == 1


def test_a_killed_import_runs_again_on_the_same_host_over_its_swept_folder(workers, alice, team_a, tmp_path):
    """The retry used to fail with FileExistsError on the folder the killed attempt left."""
    project = make_project(team_a)
    upload = uploaded(alice, project, make_zip(tmp_path / "colours.zip", colour_classes(per_class=400, size=64)))
    first = workers("first")
    dataset = datasets.dataset_create(project=project, user=alice, name="colours", upload=upload, val_fraction=0.25)
    wait_for(lambda: Job.objects.filter(id=dataset.import_job_id, stage="validating").exists(), timeout=120,
             what="the import to validate", interval=0.1)
    first.stop(signal.SIGKILL)
    left = scratch_dir(dataset.import_job_id, 1)
    assert (left / "jail" / "work" / "extracted").is_dir(), "the killed attempt's folder is there to sweep"
    workers("second")
    done = wait_done(dataset.import_job_id, timeout=240)
    assert done.state == JobState.SUCCEEDED, done.error_detail
    assert done.attempts == 2 and not left.exists() and not scratch_dir(done.id, 2).exists()
    dataset.refresh_from_db()
    assert dataset.image_count == 1200 and dataset.items.count() == 1200
