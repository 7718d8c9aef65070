"""The project feed over websockets: the real ASGI stack (origin check, session auth, routing)
and the real channels_redis layer, plus one handshake through a real daphne process."""

import base64
import json
import os
import socket
import struct
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings

from tests.conftest import make_user
from tests.ws_helpers import headers_for, session_cookie
from webapp.asgi import application
from webapp.core.broadcast import project_group
from webapp.projects.models import Project
from webapp.projects.services import project_update
from webapp.teams.models import Membership, Role

pytestmark = pytest.mark.django_db(transaction=True)



@pytest.fixture
def project(team_a, alice):
    return Project.objects.create(team=team_a, name="Grapes", created_by=alice)




def feed(project_id: int, headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/projects/{project_id}/feed/", headers=headers)


def redis_group_members(group: str) -> set[str]:
    """Channel names in a group, read straight from Redis (where channels_redis keeps them)."""
    layer = get_channel_layer()
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return {member.decode() for member in client.zrange(layer._group_key(group), 0, -1)}
    finally:
        client.close()


def test_it_uses_the_real_redis_channel_layer():
    from channels_redis.core import RedisChannelLayer

    assert isinstance(get_channel_layer(), RedisChannelLayer)
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"] == os.environ["REDIS_URL"]


def test_it_greets_a_member_with_hello(project, bob):
    headers = headers_for(bob)

    async def scenario():
        communicator = feed(project.id, headers)
        connected, _ = await communicator.connect()
        assert connected
        hello = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return hello

    assert async_to_sync(scenario)() == {"type": "hello", "project": {"id": project.id}}


def test_it_refuses_an_anonymous_user(project):
    headers = headers_for(None)

    async def scenario():
        communicator = feed(project.id, headers)
        connected, _ = await communicator.connect()
        nothing = await communicator.receive_nothing()
        await communicator.disconnect()
        return connected, nothing

    assert async_to_sync(scenario)() == (False, True)


def test_it_refuses_a_foreign_origin_even_with_a_valid_session(project, alice):
    headers = headers_for(alice, origin=(b"origin", b"http://evil.example"))

    async def scenario():
        communicator = feed(project.id, headers)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_it_refuses_a_user_of_another_team_and_sends_nothing(project, charlie, team_c):
    headers = headers_for(charlie)

    async def scenario():
        communicator = feed(project.id, headers)
        connected, _ = await communicator.connect()
        # Even an update of that project must not leak to the refused socket.
        await database_sync_to_async(project_update)(project=project, description="secret plans")
        nothing = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return connected, nothing

    assert async_to_sync(scenario)() == (False, True)
    assert redis_group_members(project_group(project.id)) == set()


def test_it_refuses_an_unknown_project(alice):
    headers = headers_for(alice)

    async def scenario():
        communicator = feed(999_999, headers)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_it_lets_a_viewer_connect(project):
    viewer = make_user("vera")
    Membership.objects.create(team=project.team, user=viewer, role=Role.VIEWER)
    headers = headers_for(viewer)

    async def scenario():
        communicator = feed(project.id, headers)
        connected, _ = await communicator.connect()
        hello = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return connected, hello["type"]

    assert async_to_sync(scenario)() == (True, "hello")


def test_it_delivers_a_committed_project_update_through_redis(project, bob):
    headers = headers_for(bob)

    async def scenario():
        communicator = feed(project.id, headers)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)  # hello
        # project_update is atomic: the broadcast leaves through Redis on commit.
        await database_sync_to_async(project_update)(project=project, name="Grapes 2", description=" ripe ")
        event = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return event

    assert async_to_sync(scenario)() == {
        "type": "project.updated",
        "project": {"id": project.id, "name": "Grapes 2", "description": "ripe"},
    }


def test_it_leaves_the_group_on_disconnect(project, alice):
    headers = headers_for(alice)
    group = project_group(project.id)
    before = redis_group_members(group)

    async def scenario():
        communicator = feed(project.id, headers)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)
        while_connected = await database_sync_to_async(redis_group_members)(group)
        await communicator.disconnect()
        after = await database_sync_to_async(redis_group_members)(group)
        # Sending to the group now reaches nobody and raises nothing.
        await get_channel_layer().group_send(group, {"type": "feed.event", "payload": {"type": "ping"}})
        return while_connected, after

    while_connected, after = async_to_sync(scenario)()
    joined = while_connected - before
    assert len(joined) == 1
    assert not joined & after


def test_it_keeps_an_idle_socket_open_longer_than_the_redis_poll(project, bob):
    """channels_redis blocks 5 s in BZPOPMIN per receive; the Redis socket timeout must outlast it."""
    headers = headers_for(bob)
    idle = get_channel_layer().brpop_timeout + 1.5

    async def scenario():
        communicator = feed(project.id, headers)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)
        assert await communicator.receive_nothing(timeout=idle, interval=0.2)
        await database_sync_to_async(project_update)(project=project, name="After a nap")
        event = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return event

    assert async_to_sync(scenario)()["project"]["name"] == "After a nap"


# --- Through a real daphne process ----------------------------------------------------------


class RawWebsocket:
    """Just enough of an RFC 6455 client (no library for one is installed): handshake, read frames."""

    def __init__(self, url: str, path: str, *, cookie: bytes | None, origin: str) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parsed.hostname}:{parsed.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {origin}",
        ]
        if cookie:
            lines.append(f"Cookie: {cookie.decode()}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")  # frames may follow at once
        self.status = int(head.split(b" ", 2)[1]) if head else 0

    def _exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("socket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def frame(self) -> tuple[int, bytes]:
        """One unmasked server frame: (opcode, payload)."""
        first, second = self._exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exact(8))
        return first & 0x0F, self._exact(length)

    def json(self) -> dict:
        opcode, payload = self.frame()
        assert opcode == 0x1, f"expected a text frame, got opcode {opcode}: {payload!r}"
        return json.loads(payload)

    def close(self) -> None:
        try:
            self.sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))  # masked close frame, no payload
        except OSError:
            pass
        self.sock.close()


def test_it_serves_the_feed_through_a_real_daphne(live_server_url, project, bob):
    path = f"/ws/projects/{project.id}/feed/"

    anonymous = RawWebsocket(live_server_url, path, cookie=None, origin="http://127.0.0.1")
    anonymous.close()
    assert anonymous.status == 403  # daphne rejects the handshake

    ws = RawWebsocket(live_server_url, path, cookie=session_cookie(bob), origin="http://127.0.0.1")
    try:
        assert ws.status == 101
        assert ws.json() == {"type": "hello", "project": {"id": project.id}}
        # The update goes from this process to daphne only through the shared Redis.
        project_update(project=project, name="Live grapes")
        event = ws.json()
        assert event["type"] == "project.updated"
        assert event["project"]["name"] == "Live grapes"
    finally:
        ws.close()


def test_it_reports_redis_down_on_healthz_and_refuses_new_sockets_cleanly(live_server_url, project, bob, redis_server):
    def health() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{live_server_url}/healthz", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert health() == (200, {"status": "ok", "database": "ok", "redis": "ok", "storage": "ok"})
    redis_server.stop()
    try:
        status, parts = health()
        assert status == 503 and parts["status"] == "failed"
        assert parts["redis"].startswith("failed: ") and "refused" in parts["redis"].lower()
        assert parts["database"] == parts["storage"] == "ok"

        ws = RawWebsocket(live_server_url, f"/ws/projects/{project.id}/feed/", cookie=session_cookie(bob),
                          origin="http://127.0.0.1")
        try:
            assert ws.status == 101  # accepted, then closed with "try again later": not a 500
            opcode, payload = ws.frame()
            assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 4503
        finally:
            ws.close()
    finally:
        redis_server.start()
    assert health()[0] == 200
    ws = RawWebsocket(live_server_url, f"/ws/projects/{project.id}/feed/", cookie=session_cookie(bob), origin="http://127.0.0.1")
    try:
        assert ws.status == 101 and ws.json()["type"] == "hello"  # back as soon as Redis is
    finally:
        ws.close()
