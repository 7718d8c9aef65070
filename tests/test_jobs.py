"""The job engine through a real Celery worker and Redis: submit, run, stream, cancel."""

import pytest

from tests.jobs_helpers import events, make_project, states, wait_done, wait_state
from webapp.jobs.models import Job, JobState
from tests.servers import wait_for
from workers.runner import scratch_dir

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUICK = {"rounds": 3, "seconds_per_round": 0.1, "matrix_size": 64}
LONG = {"rounds": 200, "seconds_per_round": 0.2, "matrix_size": 64}


@pytest.fixture
def project(team_a):
    return make_project(team_a)


def submit(client, project, params, **extra):
    return client.post(f"/api/v1/projects/{project.id}/jobs/", {"kind": "probe", "params": params, **extra},
                       content_type="application/json")


def test_it_runs_a_probe_job_to_success_with_numbered_events(worker_host, client, alice, project):
    client.force_login(alice)
    response = submit(client, project, QUICK)
    assert response.status_code == 201
    job = wait_done(response.json()["id"])
    assert job.state == JobState.SUCCEEDED, job.error_detail
    assert job.progress == 1.0 and job.attempts == 1 and job.worker_host == worker_host.hostname
    assert job.result["devices"]["cpu"]["median_gflops"] > 0
    seqs = [event.seq for event in events(job.id)]
    assert seqs == list(range(1, len(seqs) + 1)) and job.last_seq == seqs[-1]
    assert states(job.id) == ["queued", "running", "succeeded"]
    points = [e.data for e in events(job.id, "metric")]
    # Points closer than the metric window are averaged into one, which says how many it holds.
    assert [p["step"] for p in points] == sorted({p["step"] for p in points}) and points[-1]["step"] == 3
    assert sum(p.get("samples", 1) for p in points) == 3
    progress = [e.data["progress"] for e in events(job.id, "progress")]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any("Round 3/3" in e.data["message"] for e in events(job.id, "log"))


def test_it_refuses_bad_parameters_with_per_field_errors_and_no_job(client, alice, project):
    client.force_login(alice)
    response = submit(client, project, {"rounds": 0, "matrix_size": "big"})
    assert response.status_code == 400
    body = response.json()
    assert "params.rounds" in body and "params.matrix_size" in body
    assert not Job.objects.exists()


def test_it_refuses_an_unknown_kind(client, alice, project):
    client.force_login(alice)
    response = client.post(f"/api/v1/projects/{project.id}/jobs/", {"kind": "mine-bitcoin"}, content_type="application/json")
    assert response.status_code == 400 and not Job.objects.exists()


def test_it_refuses_inputs_from_the_client_and_any_key_it_does_not_know(client, alice, project):
    client.force_login(alice)
    response = submit(client, project, QUICK, inputs={"datasets": [1], "artifacts": []})
    assert response.status_code == 400 and "inputs" in response.json()
    assert "from the parameters" in response.json()["inputs"][0]
    response = submit(client, project, QUICK, priority="high")
    assert response.status_code == 400 and "“priority”" in response.json()["priority"][0]
    assert not Job.objects.exists()


def test_it_shows_a_probe_reading_nothing(client, alice, project):
    client.force_login(alice)
    job = submit(client, project, QUICK).json()
    assert job["inputs"] == {"datasets": [], "artifacts": []} and job["model"] is None


def test_it_makes_one_job_for_a_repeated_idempotency_key(client, alice, project):
    client.force_login(alice)
    first = submit(client, project, QUICK, idempotency_key="click-1")
    again = client.post(f"/api/v1/projects/{project.id}/jobs/", {"kind": "probe", "params": QUICK},
                        content_type="application/json", headers={"Idempotency-Key": "click-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert Job.objects.count() == 1


def test_it_routes_to_the_queue_the_parameters_name(client, alice, project):
    client.force_login(alice)
    job = submit(client, project, {**QUICK, "queue": "train"}).json()
    assert job["queue"] == "train"


def test_it_cancels_a_running_job_within_seconds_and_removes_partial_outputs(worker_host, client, alice, project):
    client.force_login(alice)
    job_id = submit(client, project, LONG).json()["id"]
    wait_state(job_id, JobState.RUNNING)
    wait_for(scratch_dir(job_id, 1).exists, timeout=10, what="the job's scratch folder")
    response = client.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested_at"]
    job = wait_done(job_id, timeout=10)
    assert job.state == JobState.CANCELLED
    # On a loaded host the grace can run out first: the job is then cancelled by force, and its
    # worker clears the folder when its step has stopped, moments later.
    wait_for(lambda: not scratch_dir(job_id, 1).parent.exists(), timeout=10, what="the scratch folder's removal")
    assert states(job_id)[-1] == "cancelled"


def test_it_never_starts_a_cancelled_queued_job_and_cancel_twice_changes_nothing(worker_host, client, alice, project):
    client.force_login(alice)
    blocker = submit(client, project, LONG).json()["id"]
    wait_state(blocker, JobState.RUNNING)
    waiting = submit(client, project, QUICK).json()["id"]  # the one worker is busy: this one waits
    assert client.post(f"/api/v1/jobs/{waiting}/cancel/").json()["state"] == "cancelled"
    seq_after_first_cancel = Job.objects.get(id=waiting).last_seq
    assert client.post(f"/api/v1/jobs/{waiting}/cancel/").json()["state"] == "cancelled"
    client.post(f"/api/v1/jobs/{blocker}/cancel/")
    wait_done(blocker, timeout=10)
    # Give the worker the chance to pick up the cancelled one's message: it must do nothing.
    follow_up = submit(client, project, QUICK).json()["id"]
    wait_done(follow_up)
    job = Job.objects.get(id=waiting)
    assert job.state == JobState.CANCELLED and job.attempts == 0 and job.started_at is None
    assert job.last_seq == seq_after_first_cancel
    assert states(waiting) == ["queued", "cancelled"]


def test_it_changes_nothing_when_cancelling_a_finished_job(worker_host, client, alice, project):
    client.force_login(alice)
    job_id = submit(client, project, QUICK).json()["id"]
    done = wait_done(job_id)
    assert client.post(f"/api/v1/jobs/{job_id}/cancel/").json()["state"] == "succeeded"
    assert Job.objects.get(id=job_id).last_seq == done.last_seq


def test_it_lists_and_pages_events_after_a_sequence(worker_host, client, alice, project):
    client.force_login(alice)
    job_id = submit(client, project, QUICK).json()["id"]
    wait_done(job_id)
    everything = client.get(f"/api/v1/jobs/{job_id}/events/").json()["events"]
    later = client.get(f"/api/v1/jobs/{job_id}/events/?after=3").json()["events"]
    assert [e["seq"] for e in later] == [e["seq"] for e in everything if e["seq"] > 3]
    assert client.get(f"/api/v1/jobs/{job_id}/events/?after=x").status_code == 400


def test_it_hides_jobs_of_other_teams(client, charlie, team_c, project):
    job = Job.objects.create(project=project, kind="probe", params=QUICK, queue="optimize")
    client.force_login(charlie)
    for url in [f"/api/v1/jobs/{job.id}/", f"/api/v1/jobs/{job.id}/events/", f"/jobs/{job.id}/", f"/jobs/{job.id}/log/",
                f"/api/v1/projects/{project.id}/jobs/"]:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/api/v1/jobs/{job.id}/cancel/").status_code == 404


def test_it_refuses_a_viewer_submitting_or_cancelling(client, bob, team_a, project):
    team_a.memberships.filter(user=bob).update(role="viewer")
    job = Job.objects.create(project=project, kind="probe", params=QUICK, queue="optimize")
    client.force_login(bob)
    assert submit(client, project, QUICK).status_code == 403
    assert client.post(f"/api/v1/jobs/{job.id}/cancel/").status_code == 403
    assert client.get(f"/api/v1/jobs/{job.id}/").status_code == 200
