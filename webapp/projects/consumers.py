from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from webapp.access import Action, authorize
from webapp.core.broadcast import project_group
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


class ProjectFeedConsumer(AsyncJsonWebsocketConsumer):
    """Live feed of a project: access is checked before joining the group or sending a frame."""

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        project_id = self.scope["url_route"]["kwargs"]["project_id"]
        if user is None or not user.is_authenticated or await _project_team_id(user, project_id) is None:
            await self.close()
            return
        self.group = project_group(project_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "project": {"id": project_id}})

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def feed_event(self, event: dict) -> None:
        await self.send_json(event["payload"])
