"""The event store: numbered rows in the database, then a doorbell on the channel layer."""

from django.db import transaction
from django.db.models import QuerySet

from webapp.core.broadcast import broadcast, project_group
from webapp.jobs.models import Job, JobEvent

# Fields of Job that the live pages show; a change to any of them is announced on the project feed.
SUMMARY_FIELDS = ("state", "progress", "stage")


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def job_summary(job: Job) -> dict:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "progress": job.progress,
        "stage": job.stage,
        "error": job.error,
        "worker_host": job.worker_host,
        "attempts": job.attempts,
    }


def events_append(job_id: int, items: list[tuple[str, dict]], **job_fields) -> list[JobEvent]:
    """Store events with the job's next sequence numbers and update its live fields in one
    transaction; ring the bells after commit. Progress is kept from going back."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(id=job_id)
        if "progress" in job_fields:
            job_fields["progress"] = max(job.progress, job_fields["progress"])
        rows = [
            JobEvent(job_id=job_id, seq=job.last_seq + offset, kind=kind, data=data)
            for offset, (kind, data) in enumerate(items, start=1)
        ]
        JobEvent.objects.bulk_create(rows)
        job_fields["last_seq"] = job.last_seq + len(rows)
        # A state event always announces the job: its callers may have set the state already.
        summary_changed = any(kind == "state" for kind, _ in items) or any(
            getattr(job, name) != job_fields[name] for name in SUMMARY_FIELDS if name in job_fields
        )
        for name, value in job_fields.items():
            setattr(job, name, value)
        job.save(update_fields=list(job_fields))
        if rows:
            broadcast(job_group(job_id), {"type": "events", "events": [row.as_message() for row in rows]})
        if summary_changed:
            broadcast(project_group(job.project_id), {"type": "job.updated", "job": job_summary(job)})
    return rows


def events_after(job_id: int, after: int, *, limit: int = 1000) -> QuerySet[JobEvent]:
    return JobEvent.objects.filter(job_id=job_id, seq__gt=after).order_by("seq")[:limit]
