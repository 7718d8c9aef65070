"""Small helpers shared by the job tests."""

from tests.servers import wait_for
from webapp.jobs.models import TERMINAL_STATES, Job, JobEvent
from webapp.projects.models import Project


def make_project(team, name: str = "Vision") -> Project:
    return Project.objects.create(team=team, name=name)


def wait_state(job_id: int, states, *, timeout: float = 120) -> Job:
    states = (states,) if isinstance(states, str) else tuple(states)
    return wait_for(lambda: Job.objects.filter(id=job_id, state__in=states).first(), timeout=timeout,
                    what=f"job {job_id} to reach {states}", interval=0.1)


def wait_done(job_id: int, *, timeout: float = 120) -> Job:
    return wait_state(job_id, TERMINAL_STATES, timeout=timeout)


def events(job_id: int, kind: str | None = None) -> list[JobEvent]:
    rows = JobEvent.objects.filter(job_id=job_id).order_by("seq")
    return list(rows.filter(kind=kind) if kind else rows)


def states(job_id: int) -> list[str]:
    return [event.data["state"] for event in events(job_id, "state")]
