"""The base of every live feed (websocket consumer): it survives Redis faults.

Redis is only the doorbell. While it is down a new socket is accepted and closed at once with
4503 (4000 + HTTP's 503: autobahn, under daphne, sends only 1000 and 3000-4999, so not RFC
6455's 1013), and the browser's reconnect loop tries again with backoff, instead of a 500.
A Redis that restarts empty forgets every group, so each socket joins its group again every
LIVE_RESYNC_SECONDS and asks the store (the truth) for what it has not sent: a lost bell costs
at most that long, never a reload.
"""

import asyncio
import contextlib
import logging

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

SERVICE_UNAVAILABLE = 4503


class LiveConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    accepted: bool = False
    keeper: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        except (RedisError, OSError) as error:  # the channel layer's Redis is down or went away
            log.warning("live feed %s closed: Redis is unavailable (%s)", scope.get("path"), error)
            if not self.accepted:
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": SERVICE_UNAVAILABLE})
        finally:
            if self.keeper:
                self.keeper.cancel()

    async def join(self, group: str) -> None:
        """Join the group, accept the socket, then keep both in step with the store."""
        self.group = group
        self.sending = asyncio.Lock()  # the keeper and the doorbell never send at once
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.accepted = True
        self.keeper = asyncio.create_task(self._keep())

    async def resync(self) -> None:
        """Send what the store has that this socket has not; called under `self.sending`."""

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(settings.LIVE_RESYNC_SECONDS)
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
            except (RedisError, OSError):
                await self.close(code=SERVICE_UNAVAILABLE)  # the page reconnects with backoff
                return
            async with self.sending:
                await self.resync()

    async def disconnect(self, code: int) -> None:
        if self.keeper:
            self.keeper.cancel()
        if self.group:
            with contextlib.suppress(RedisError, OSError):
                await self.channel_layer.group_discard(self.group, self.channel_name)
