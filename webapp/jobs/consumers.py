from channels.db import database_sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import Http404

from webapp.access import Action
from webapp.core.live import LiveConsumer
from webapp.core.numbers import whole_number
from webapp.jobs.events import events_after, job_group
from webapp.jobs.selectors import job_for_user

REPLAY_PAGE = 1000


@database_sync_to_async
def _may_watch(user, job_id: int) -> bool:
    try:
        job_for_user(user, job_id, Action.VIEW)
    except (Http404, PermissionDenied):
        return False
    return True


@database_sync_to_async
def _stored_after(job_id: int, after: int) -> list[dict]:
    return [event.as_message() for event in events_after(job_id, after, limit=REPLAY_PAGE)]


class JobConsumer(LiveConsumer):
    """ws/jobs/<id>/?after=<seq>: stored events after `seq`, then live ones, each exactly once.

    The group is joined before the history is read, so nothing falls between the two; the
    doorbell carries the new events, and when it does not follow on from what this client has
    (a gap), the missing ones are read from the database instead. Every LIVE_RESYNC_SECONDS the
    store is asked again (LiveConsumer), so bells lost to a Redis restart are made up.
    """

    job_id: int
    sent: int = 0

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if user is None or not user.is_authenticated or not await _may_watch(user, self.job_id):
            await self.close()
            return
        query_string = self.scope["query_string"].decode(errors="replace")  # a client may send any bytes
        query = dict(part.split("=", 1) for part in query_string.split("&") if "=" in part)
        self.sent = whole_number(query.get("after", "0")) or 0  # no number: from the start
        await self.join(job_group(self.job_id))
        async with self.sending:
            await self._send_stored()

    async def resync(self) -> None:
        await self._send_stored()

    async def _send_stored(self) -> None:
        while events := await _stored_after(self.job_id, self.sent):
            await self._send(events)
            if len(events) < REPLAY_PAGE:
                break

    async def _send(self, events: list[dict]) -> None:
        await self.send_json({"type": "events", "events": events})
        self.sent = events[-1]["seq"]

    async def feed_event(self, message: dict) -> None:
        async with self.sending:
            events = [event for event in message["payload"]["events"] if event["seq"] > self.sent]
            if not events:
                return  # already sent from the store
            if events[0]["seq"] == self.sent + 1:
                await self._send(events)
            else:
                await self._send_stored()
