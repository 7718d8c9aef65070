"""Per-team slots on each queue, and fair turns across teams: a team over its limit waits in the
database (queued, not sent to the broker) while another team's job goes; slots freed are handed
round-robin across teams; racing submits neither overfill a team's slots nor lose a job."""

import pytest
from django.db import connection
from django.test import Client

from tests.helpers import at_once
from webapp.jobs import services
from webapp.jobs.models import Job, JobEvent, JobState
from webapp.projects.models import Project

QUICK = {"rounds": 1, "seconds_per_round": 0.05, "matrix_size": 16}


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def slots(settings):
    settings.TEAM_RUNNING_JOBS = {"train": 1, "optimize": 1}
    return settings


@pytest.fixture
def projects(team_a, team_c, alice, charlie) -> dict:
    return {"a": (Project.objects.create(team=team_a, name="A", created_by=alice), alice),
            "c": (Project.objects.create(team=team_c, name="C", created_by=charlie), charlie)}


def submit(project, user) -> Job:
    job, _ = services.job_submit(project=project, user=user, kind="probe", params=QUICK)
    job.refresh_from_db()
    return job


def finish(job: Job) -> None:
    assert services.job_claim(job_id=job.id, owner="w", host="h")
    assert services.job_finish(job_id=job.id, owner="w", state=JobState.SUCCEEDED)


def sent(job: Job) -> bool:
    job.refresh_from_db()
    return job.released_at is not None and job.enqueued_at is not None and job.task_id != ""


def test_a_team_over_its_limit_waits_while_another_teams_job_goes(transactional_db, slots, projects):
    (project_a, alice), (project_c, charlie) = projects["a"], projects["c"]
    first, second, third = (submit(project_a, alice) for _ in range(3))
    other = submit(project_c, charlie)
    assert sent(first) and sent(other)
    assert not sent(second) and not sent(third)
    assert second.state == third.state == JobState.QUEUED and second.enqueued_at is None
    # The API and the job page say why, and where in the team's line.
    client = Client()
    client.force_login(alice)
    waiting = client.get(f"/api/v1/jobs/{third.id}/").json()["waiting"]
    assert waiting["position"] == 2 and "team “Team A” has 1 optimize job started" in waiting["reason"]
    assert client.get(f"/api/v1/jobs/{first.id}/").json()["waiting"] is None
    assert "number 1 in the team&#x27;s line" in client.get(f"/jobs/{second.id}/").content.decode()
    assert JobEvent.objects.filter(job=second, kind="log", data__message__startswith="Waiting its turn").exists()
    # The reconciler does not send what waits its turn as if its message were lost.
    assert services.jobs_requeue_lost_messages(queued_task_ids={first.task_id, other.task_id}) == []
    # A slot frees: the next in the team's line goes, the one after waits on.
    finish(first)
    assert sent(second) and not sent(third)
    assert JobEvent.objects.filter(job=second, kind="log", data__message__startswith="Its turn came").exists()
    assert client.get(f"/api/v1/jobs/{third.id}/").json()["waiting"]["position"] == 1
    services.job_cancel(job=second)  # a cancelled queued job gives its slot back too
    assert sent(third)


def test_freed_slots_go_round_robin_across_teams(transactional_db, slots, projects, team_a, bob):
    from webapp.teams.models import Team

    team_b = Team.objects.create(name="Team B")
    team_b.memberships.create(user=bob, role="owner")
    project_b = Project.objects.create(team=team_b, name="B", created_by=bob)
    (project_a, alice), (project_c, charlie) = projects["a"], projects["c"]
    running = [submit(project_a, alice), submit(project_b, bob), submit(project_c, charlie)]  # A had the first turn
    flood = [submit(project_a, alice) for _ in range(3)]  # A floods the queue first
    b_jobs = [submit(project_b, bob) for _ in range(2)]
    c_jobs = [submit(project_c, charlie)]
    assert all(sent(job) for job in running) and not any(sent(job) for job in flood + b_jobs + c_jobs)
    slots.TEAM_RUNNING_JOBS = {"train": 1, "optimize": 4}  # three more slots for each team at once
    released = services.jobs_release(queue="optimize")
    # One per team per round, the team whose last turn is oldest first: A, B, C, A, B, A.
    assert released == [flood[0].id, b_jobs[0].id, c_jobs[0].id, flood[1].id, b_jobs[1].id, flood[2].id]
    order = list(Job.objects.filter(id__in=released).order_by("released_at").values_list("id", flat=True))
    assert order == released
    # Next time the team whose last turn is oldest goes first: C (round 1), B (round 2), then A.
    slots.TEAM_RUNNING_JOBS = {"train": 1, "optimize": 1}
    extra = [submit(project_a, alice), submit(project_b, bob), submit(project_c, charlie)]
    slots.TEAM_RUNNING_JOBS = {"train": 1, "optimize": 8}
    assert services.jobs_release(queue="optimize") == [extra[2].id, extra[1].id, extra[0].id]
    assert all(sent(job) for job in extra)


def test_racing_submits_neither_overfill_a_teams_slots_nor_lose_a_job(transactional_db, slots, projects):
    slots.TEAM_RUNNING_JOBS = {"train": 2, "optimize": 2}
    project, alice = projects["a"]
    results = at_once(16, lambda i: submit(project, alice))
    assert all(isinstance(job, Job) for job in results), results
    assert Job.objects.count() == 16
    assert Job.objects.filter(released_at__isnull=False).count() == 2
    # Every job gets its turn as the ones before it end, each sent once.
    for _ in range(16):
        running = list(Job.objects.filter(state=JobState.QUEUED, released_at__isnull=False))
        assert 1 <= len(running) <= 2
        finish(running[0])
    assert Job.objects.filter(state=JobState.SUCCEEDED).count() == 16
    tasks = list(Job.objects.values_list("task_id", flat=True))
    assert len(set(tasks)) == 16 and "" not in tasks
    connection.close()
