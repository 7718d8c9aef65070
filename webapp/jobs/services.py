"""Job verbs. Web side: submit, cancel. Turns: a team's jobs beyond its slots on a queue wait in
the database and are released round-robin across teams. Worker side: claim, renew the lease,
finish. Reconciler: recover what lost workers and a lost broker left behind. Every state change
is an atomic conditional update plus a stored `state` event."""

from collections import Counter, defaultdict, deque
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from webapp.celery import app as celery_app
from webapp.core.quota import QuotaExceeded, quota_check
from webapp.jobs.events import events_append
from webapp.jobs.kinds import KINDS, JobKind
from webapp.jobs.models import ACTIVE_STATES, InputKind, Job, JobInput, JobState
from webapp.jobs.selectors import clean_key, job_waiting, job_with_key, team_job_slots
from webapp.projects.models import Project
from webapp.teams.models import Team

if TYPE_CHECKING:  # these apps' models import this app's
    from webapp.registry.models import Model


def _state_event(state: str, **extra) -> tuple[str, dict]:
    return ("state", {"state": state, **{k: v for k, v in extra.items() if v not in (None, "")}})


def params_validate(kind: str, params: dict) -> dict:
    """Per-field errors as a ValidationError, before any row exists."""
    if kind not in KINDS:
        raise ValidationError({"kind": f"Unknown job kind “{kind}”. Known kinds: {', '.join(sorted(KINDS))}."})
    serializer = KINDS[kind].serializer(data=params)
    if not serializer.is_valid():
        raise ValidationError({f"params.{field}": _messages(errors) for field, errors in serializer.errors.items()})
    return dict(serializer.validated_data)


def _messages(errors) -> list[str]:
    """A field's messages. A list field's are keyed by position ({1: [...]}), said as "entry 2: …";
    a list of objects gives one dict per entry ({} when it is fine), said as "entry 2: batch: …"."""
    if isinstance(errors, dict):
        return [f"{f'entry {key + 1}' if isinstance(key, int) else key}: {message}"
                for key, value in errors.items() for message in _messages(value)]
    if any(isinstance(error, dict) for error in errors):
        return [f"entry {index + 1}: {message}"
                for index, error in enumerate(errors) if error for message in _messages(error)]
    return [str(error) for error in errors]


def job_submit(
    *,
    project: Project,
    user,
    kind: str,
    params: dict,
    model: "Model | None" = None,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Create the job, with the datasets and artifacts its params name (its kind says which fields)
    and the model it makes or trains, and enqueue it on commit. The caller has checked that the
    user may use them. The same idempotency key gives back the same job."""
    existing = job_with_key(project_id=project.id, user=user, key=idempotency_key, kind=kind)
    if existing:
        return existing, False
    clean, key = params_validate(kind, params), clean_key(idempotency_key)
    _check_room(project, KINDS[kind], clean)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                project=project,
                kind=kind,
                created_by=user,
                params=clean,
                model=model,
                idempotency_key=key,
                queue=KINDS[kind].route(clean),
            )
            JobInput.objects.bulk_create(_inputs(job, KINDS[kind], clean))
            events_append(job.id, [_state_event(JobState.QUEUED, queue=job.queue)])
            # robust: with the broker down the job stays queued and the reconciler sends it later.
            transaction.on_commit(lambda: _take_turn(job), robust=True)
    except IntegrityError:  # a concurrent request with the same key won the race
        return Job.objects.get(project=project, created_by=user, idempotency_key=key), False
    return job, True


def _check_room(project: Project, kind: JobKind, params: dict) -> None:
    """A job whose output can be told now not to fit the team's quota is refused before it exists."""
    if kind.makes is None:
        return
    try:
        quota_check(project.team, kind.makes(params))
    except QuotaExceeded as exc:
        raise ValidationError(f"{kind.label} would not fit: {exc}") from None


def _inputs(job: Job, kind: JobKind, params: dict) -> list[JobInput]:
    """One row per dataset and artifact the params name, in the kind's order, each once."""
    rows = {("dataset", params[name]): JobInput(job=job, kind=InputKind.DATASET, dataset_id=params[name])
            for name in kind.datasets if params.get(name)}
    rows.update({("artifact", params[name]): JobInput(job=job, kind=InputKind.ARTIFACT, artifact_id=params[name])
                 for name in kind.artifacts if params.get(name)})
    return list(rows.values())


def _take_turn(job: Job) -> None:
    """Right after submit: the job goes to the broker if its team has a slot free on its queue;
    else its log says why it waits."""
    if job.id not in jobs_release(queue=job.queue, fresh=job.id):
        job.refresh_from_db()
        waiting = job_waiting(job)
        if waiting:
            events_append(job.id, [("log", {"level": "info", "message": waiting["reason"]})])


def jobs_release(*, queue: str, fresh: int | None = None) -> list[int]:
    """Give waiting jobs on `queue` the slots their teams have free, and send them to the broker.

    Teams take turns: the team whose last turn on this queue is the oldest (or that never had
    one) goes first, one job each round, each team's jobs in the order they were submitted. The
    teams' rows are locked first (in id order), so two releases at once cannot both fill the same
    slot; the conditional update cannot send a job twice. Called after a submit, when a job ends,
    and by the reconciler. Returns the ids released; each but `fresh` (the job just submitted)
    is told in its log that its turn came."""
    limit = team_job_slots(queue)
    waiting = Job.objects.filter(queue=queue, state=JobState.QUEUED, released_at__isnull=True)
    released = []
    with transaction.atomic():
        teams = sorted(set(waiting.values_list("project__team_id", flat=True)))
        if not teams:
            return []
        list(Team.objects.select_for_update().filter(id__in=teams).order_by("id").values_list("id"))
        lines = defaultdict(deque)
        for job_id, team_id in waiting.order_by("created_at", "id").values_list("id", "project__team_id"):
            lines[team_id].append(job_id)
        theirs = Job.objects.filter(queue=queue, project__team_id__in=lines, released_at__isnull=False).values("project__team_id")
        started = Counter(dict(theirs.filter(state__in=ACTIVE_STATES).annotate(n=Count("id")).values_list("project__team_id", "n")))
        last_turn = dict(theirs.annotate(at=Max("released_at")).values_list("project__team_id", "at"))
        now = timezone.now()
        order = sorted(lines, key=lambda team: (team in last_turn, last_turn.get(team, now), lines[team][0]))

        def may_go(team: int) -> bool:
            return bool(lines[team]) and (limit is None or started[team] < limit)

        while any(map(may_go, order)):  # rounds: one job of each team that may go
            for team in filter(may_go, order):
                job_id = lines[team].popleft()
                at = now + timedelta(microseconds=len(released))  # the turns' order, for the next release
                if Job.objects.filter(id=job_id, state=JobState.QUEUED, released_at__isnull=True).update(released_at=at):
                    started[team] += 1
                    released.append(job_id)
        for job_id in released:
            if job_id != fresh:
                events_append(job_id, [("log", {"level": "info", "message": "Its turn came: sent to the workers."})])
            transaction.on_commit(lambda job_id=job_id: job_enqueue(job_id=job_id), robust=True)
    return released


def _release_after(job_id: int) -> None:
    """A job ended or gave its slot back: the next of its queue's waiting jobs may go."""
    queue = Job.objects.filter(id=job_id).values_list("queue", flat=True).first()
    if queue:
        jobs_release(queue=queue)


def job_enqueue(*, job_id: int) -> None:
    job = Job.objects.get(id=job_id)
    task_id = f"job-{job.id}-{job.attempts}-{timezone.now().timestamp():.0f}"
    Job.objects.filter(id=job.id).update(task_id=task_id)
    celery_app.send_task(KINDS[job.kind].task_name, args=[job.id], queue=job.queue, task_id=task_id)
    Job.objects.filter(id=job.id).update(enqueued_at=timezone.now())


def job_cancel(*, job: Job) -> Job:
    """A queued job is cancelled at once and never starts; a running one is asked to stop
    (the pipeline polls the flag; the reconciler hard-stops it after a grace period).
    Cancelling twice, or a finished job, changes nothing."""
    now = timezone.now()
    if Job.objects.filter(id=job.id, state=JobState.QUEUED).update(
        state=JobState.CANCELLED, cancel_requested_at=now, finished_at=now
    ):
        events_append(job.id, [_state_event(JobState.CANCELLED, reason="Cancelled before it started.")], state=JobState.CANCELLED)
        transaction.on_commit(lambda: _release_after(job.id), robust=True)
    elif Job.objects.filter(id=job.id, state=JobState.RUNNING, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now
    ):
        events_append(job.id, [("log", {"level": "warning", "message": "Cancel requested; stopping…"})])
    job.refresh_from_db()
    return job


# --- worker side ------------------------------------------------------------------------------


def _lease_until():
    return timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def job_claim(*, job_id: int, owner: str, host: str) -> Job | None:
    """Take a queued job for this attempt, or None: not queued (already running elsewhere,
    finished, cancelled), so this delivery of the task does nothing."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id).first()
        if job is None or job.state != JobState.QUEUED:
            return None
        attempts = job.attempts + 1
        Job.objects.filter(id=job_id).update(
            attempts=attempts,
            worker_host=host,
            lease_owner=owner,
            lease_expires_at=_lease_until(),
            started_at=job.started_at or now,
        )
        note = "resuming from the last checkpoint" if job.checkpoint else None
        events_append(
            job_id, [_state_event(JobState.RUNNING, host=host, attempt=attempts, note=note)], state=JobState.RUNNING
        )
    return Job.objects.get(id=job_id)


def job_note_duplicate(*, job_id: int, host: str) -> None:
    """Say in a running job's log that another delivery of its task reached `host` and did nothing
    (a broker that redelivered it): the lease held, and an operator can see that it did."""
    with transaction.atomic():
        if Job.objects.select_for_update().filter(id=job_id, state=JobState.RUNNING).exists():
            events_append(job_id, [("log", {"level": "info", "message": f"Another delivery of this job reached "
                                            f"{host} and was ignored: the job is already running."})])


def job_renew_lease(*, job_id: int, owner: str) -> bool:
    """False when this attempt no longer holds the job (hard-stopped, or taken over)."""
    return bool(
        Job.objects.filter(id=job_id, state=JobState.RUNNING, lease_owner=owner).update(lease_expires_at=_lease_until())
    )


def job_cancel_requested(*, job_id: int) -> bool:
    """Also true for a job that is gone: its project or team was deleted while it ran."""
    return not Job.objects.filter(id=job_id, cancel_requested_at__isnull=True).exists()


def job_save_checkpoint(*, job_id: int, owner: str, checkpoint: dict) -> None:
    Job.objects.filter(id=job_id, state=JobState.RUNNING, lease_owner=owner).update(checkpoint=checkpoint)


def job_finish(
    *, job_id: int, owner: str, state: str, result: dict | None = None, error: str = "", detail: str = ""
) -> bool:
    """Record the end of an attempt that still holds the job; a stale attempt changes nothing."""
    with transaction.atomic():
        fields = {"state": state, "finished_at": timezone.now(), "lease_expires_at": None, "error": error, "error_detail": detail}
        if state == JobState.SUCCEEDED:
            fields.update(result=result or {}, progress=1.0)
        if not Job.objects.filter(id=job_id, state=JobState.RUNNING, lease_owner=owner).update(**fields):
            return False
        live = {name: fields[name] for name in ("state", "progress") if name in fields}
        # the detail rides along (bounded) so an open job page shows it without a reload
        events_append(job_id, [_state_event(state, error=error, result=result, detail=detail[:65536])], **live)
        transaction.on_commit(lambda: _release_after(job_id), robust=True)
    return True


# --- reconciler -------------------------------------------------------------------------------


def jobs_recover_lost(*, now=None) -> list[int]:
    """Running jobs whose lease expired lost their worker: resume once from the checkpoint
    (if the kind can) or fail with a reason. Never left running, never looping."""
    now = now or timezone.now()
    touched = []
    for job in Job.objects.filter(state=JobState.RUNNING, lease_expires_at__lt=now):
        kind = KINDS[job.kind]
        if job.cancel_requested_at is None and kind.resumable and job.attempts < kind.max_attempts:
            if Job.objects.filter(id=job.id, state=JobState.RUNNING, lease_owner=job.lease_owner).update(
                state=JobState.QUEUED, lease_owner="", lease_expires_at=None
            ):
                events_append(
                    job.id,
                    [
                        ("log", {"level": "warning", "message": f"Worker {job.worker_host} was lost; resuming on another worker."}),
                        _state_event(JobState.QUEUED, reason="worker lost"),
                    ],
                    state=JobState.QUEUED,
                )
                job_enqueue(job_id=job.id)
                touched.append(job.id)
        elif job.cancel_requested_at is not None:
            if job_finish(job_id=job.id, owner=job.lease_owner, state=JobState.CANCELLED):
                touched.append(job.id)
        elif job_finish(
            job_id=job.id,
            owner=job.lease_owner,
            state=JobState.FAILED,
            error=f"The worker running this job ({job.worker_host}) was lost, and the job cannot be resumed.",
            detail=f"Lease expired at {job.lease_expires_at.isoformat()} after {job.attempts} attempt(s).",
        ):
            touched.append(job.id)
    return touched


def jobs_hard_stop(*, now=None) -> list[int]:
    """Running jobs that ignored a cancel for the grace period are stopped by force."""
    now = now or timezone.now()
    deadline = now - timedelta(seconds=settings.JOB_CANCEL_GRACE_SECONDS)
    stopped = []
    for job in Job.objects.filter(state=JobState.RUNNING, cancel_requested_at__lt=deadline):
        if job_finish(job_id=job.id, owner=job.lease_owner, state=JobState.CANCELLED, detail="Stopped by force after the grace period."):
            celery_app.control.revoke(job.task_id, terminate=True, signal="SIGKILL")
            stopped.append(job.id)
    return stopped


def jobs_requeue_lost_messages(*, queued_task_ids: set[str], now=None) -> list[int]:
    """Queued jobs whose task is not in the broker (Redis restarted empty, or was down when the
    job was submitted) are sent again."""
    now = now or timezone.now()
    settled = now - timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS)
    never_sent = Q(enqueued_at__isnull=True, released_at__lt=settled)
    lost = Job.objects.filter(Q(enqueued_at__lt=settled) | never_sent, state=JobState.QUEUED,
                              released_at__isnull=False).exclude(task_id__in=queued_task_ids)  # not those waiting their turn
    requeued = []
    for job in lost:
        job_enqueue(job_id=job.id)
        requeued.append(job.id)
    return requeued
