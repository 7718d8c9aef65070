from channels.db import database_sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import Http404

from webapp.access import Action, authorize
from webapp.core.broadcast import project_group
from webapp.core.live import LiveConsumer
from webapp.jobs.events import job_summary
from webapp.jobs.models import ACTIVE_STATES, Job
from webapp.projects.models import Project


@database_sync_to_async
def _project_team_id(user, project_id: int) -> int | None:
    """The project's team id if the user may watch it, else None."""
    team_id = Project.objects.filter(id=project_id).values_list("team_id", flat=True).first()
    if team_id is None:
        return None
    try:
        authorize(user, team_id, Action.VIEW)
    except (Http404, PermissionDenied):
        return None
    return team_id


@database_sync_to_async
def _live_summaries(project_id: int, known: set[int]) -> dict[int, dict]:
    """Summaries of the project's active jobs, and of the jobs this socket saw active (which
    may have finished since): what a page shows live, read from the store."""
    jobs = Job.objects.filter(project_id=project_id).filter(state__in=ACTIVE_STATES) | Job.objects.filter(id__in=known)
    return {job.id: job_summary(job) for job in jobs.only(*JOB_SUMMARY_FIELDS)}


JOB_SUMMARY_FIELDS = ("id", "kind", "state", "progress", "stage", "error", "worker_host", "attempts", "project_id")


class ProjectFeedConsumer(LiveConsumer):
    """Live feed of a project: access is checked before joining the group or sending a frame.
    Every LIVE_RESYNC_SECONDS the live jobs are read from the store and any summary this socket
    has not sent goes out, so a bell lost to a Redis restart is made up without a reload."""

    project_id: int
    summaries: dict[int, dict]

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.project_id = self.scope["url_route"]["kwargs"]["project_id"]
        if user is None or not user.is_authenticated or await _project_team_id(user, self.project_id) is None:
            await self.close()
            return
        self.summaries = await _live_summaries(self.project_id, set())  # as the page was rendered
        await self.join(project_group(self.project_id))
        await self.send_json({"type": "hello", "project": {"id": self.project_id}})

    async def resync(self) -> None:
        for job_id, summary in (await _live_summaries(self.project_id, set(self.summaries))).items():
            if self.summaries.get(job_id) != summary:
                await self._send_job(summary)
        self.summaries = {job_id: s for job_id, s in self.summaries.items() if s["state"] in ACTIVE_STATES}

    async def _send_job(self, summary: dict) -> None:
        self.summaries[summary["id"]] = summary
        await self.send_json({"type": "job.updated", "job": summary})

    async def feed_event(self, event: dict) -> None:
        async with self.sending:
            payload = event["payload"]
            if payload.get("type") == "job.updated":
                await self._send_job(payload["job"])
            else:
                await self.send_json(payload)
