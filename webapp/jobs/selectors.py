from django.db.models import QuerySet

from webapp.access import Action, get_for_user
from webapp.jobs.models import Job


def job_for_user(user, job_id: int, action: Action) -> Job:
    return get_for_user(user, Job.objects.select_related("project__team"), job_id, action, team_lookup="project__team")


def jobs_of_project(project_id: int) -> QuerySet[Job]:
    return Job.objects.filter(project_id=project_id).select_related("created_by")


def job_log_lines(job: Job):
    """Every stored log line of a job, oldest first, without loading them all at once."""
    return job.events.filter(kind="log").order_by("seq").values_list("data", flat=True).iterator(chunk_size=2000)
