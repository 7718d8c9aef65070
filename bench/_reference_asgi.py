"""The floor for bench/events.py: a bare channels_redis group -> websocket path, served by daphne
with Vintner's settings (same channel layer config) but no auth, no database, no reporter.

ws://.../ws/ref/ joins the group `bench.ref`; each `feed.event` sent to the group is written to
the socket as its JSON payload, as JobConsumer does with the events it is rung with."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402

django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "bench.ref"


class ReferenceConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def feed_event(self, message: dict) -> None:
        await self.send_json(message["payload"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/ref/", ReferenceConsumer.as_asgi())])})
