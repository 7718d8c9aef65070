from django.conf import settings
from django.db.models import Q, QuerySet

from webapp.access import Action, get_for_user
from webapp.core.exceptions import Conflict
from webapp.jobs.models import ACTIVE_STATES, Job, JobEvent, JobState


def job_for_user(user, job_id: int, action: Action) -> Job:
    return get_for_user(user, Job.objects.select_related("project__team"), job_id, action, team_lookup="project__team")


def job_with_key(*, project_id: int, user, key: str | None, kind: str) -> Job | None:
    """The `kind` job this user already started in this project with this idempotency key, if
    any; a Conflict if the key started a job of another kind."""
    key = clean_key(key)
    job = Job.objects.filter(project_id=project_id, created_by=user, idempotency_key=key).first() if key else None
    if job is not None and job.kind != kind:
        raise Conflict(f"This Idempotency-Key started {job.kind} job #{job.id}; send a new key for a new {kind} job.")
    return job


def clean_key(key: str | None) -> str | None:
    return (key or "").strip()[:100] or None


def jobs_of_project(project_id: int) -> QuerySet[Job]:
    return Job.objects.filter(project_id=project_id).select_related("created_by").prefetch_related("reads")


JOB_ROW = ("id", "kind", "state", "progress", "stage", "created_at")  # what a job list's row shows
JOBS_PER_PAGE = 50


def job_rows_of_project(project_id: int) -> QuerySet[Job]:
    """A project's jobs, newest first, with the row's columns only (not params, result, errors)."""
    return Job.objects.filter(project_id=project_id).only(*JOB_ROW)


def inputs_of_job(job: Job) -> dict[str, list[int]]:
    """The ids of what the job reads, as the API has always shown them: {"datasets": [...],
    "artifacts": [...]}, in the order it was given them. One deleted since is left out (its row
    remains, with its kind; the job's params keep the id)."""
    reads = job.reads.all()  # prefetched by jobs_of_project
    return {"datasets": [row.dataset_id for row in reads if row.dataset_id is not None],
            "artifacts": [row.artifact_id for row in reads if row.artifact_id is not None]}


def job_log_lines(job: Job):
    """Every stored log line of a job, oldest first, without loading them all at once."""
    return job.events.filter(kind="log").order_by("seq").values_list("data", flat=True).iterator(chunk_size=2000)


def runs_series(jobs: list[Job], prefix: str = "epoch/") -> list[dict]:
    """Per job, its metric points whose names start with `prefix`: [{job, label, state, metrics:
    {name: [[step, value], …]}}], for charts that compare runs."""
    series = {job.id: {"job": job.id, "label": f"#{job.id}", "state": job.state, "metrics": {}} for job in jobs}
    points = JobEvent.objects.filter(job_id__in=series, kind="metric", data__name__startswith=prefix).order_by("job_id", "seq")
    for job_id, data in points.values_list("job_id", "data"):
        series[job_id]["metrics"].setdefault(data["name"], []).append([data.get("step"), data["value"]])
    return list(series.values())


def team_job_slots(queue: str) -> int | None:
    """How many jobs of one team may be started on `queue` at once; None: no limit. A queue of
    trainings on several GPUs (train_gpus_<n>) has as many as train, unless set apart."""
    slots = settings.TEAM_RUNNING_JOBS
    return slots.get(queue, slots.get("train") if queue.startswith("train_gpus_") else None) or None


def team_jobs_started(team_id: int, queue: str) -> int:
    """Jobs of the team holding a slot on the queue: running, or sent to the broker for a worker."""
    return Job.objects.filter(project__team_id=team_id, queue=queue, state__in=ACTIVE_STATES,
                              released_at__isnull=False).count()


def job_waiting(job: Job) -> dict | None:
    """Why a queued job has not been sent to the workers yet, and its place in its team's line on
    its queue ({"position", "reason"}); None once it has had its turn."""
    if job.state != JobState.QUEUED or job.released_at is not None:
        return None
    team = job.project.team
    ahead = Job.objects.filter(project__team_id=team.id, queue=job.queue, state=JobState.QUEUED, released_at__isnull=True)
    position = ahead.filter(Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, id__lt=job.id)).count() + 1
    limit, started = team_job_slots(job.queue), team_jobs_started(team.id, job.queue)
    if limit is not None and started >= limit:
        reason = (f"Waiting its turn: team “{team.name}” has {started} {job.queue} job{'s' if started != 1 else ''} "
                  f"started, as many as one team may run at once on that queue. It is number {position} in the "
                  "team's line and starts when one of them ends.")
    else:
        reason = "About to be sent to the workers."
    return {"position": position, "reason": reason}
