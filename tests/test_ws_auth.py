"""Websockets opened with an API token (the command line) through the real ASGI stack: the token
alone decides who it is, and the origin check still guards every session-cookie handshake."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from webapp.core.models import ApiToken
from webapp.core.tokens import token_issue, token_revoke

from tests.jobs_helpers import make_project
from tests.ws_helpers import session_cookie
from webapp.asgi import application
from webapp.jobs.events import events_append
from webapp.jobs.models import Job, JobState

pytestmark = pytest.mark.django_db(transaction=True)

EVIL = (b"origin", b"http://evil.example")


@pytest.fixture
def job(team_a, alice):
    job = Job.objects.create(project=make_project(team_a), kind="probe", created_by=alice, queue="optimize",
                             state=JobState.QUEUED)
    events_append(job.id, [("state", {"state": "queued"}), ("log", {"level": "info", "message": "hello"})])
    return job


def token_header(user, scheme: str = "Token") -> tuple[bytes, bytes]:
    return (b"authorization", f"{scheme} {token_issue(user=user)[1]}".encode())


def opens(path: str, headers: list[tuple[bytes, bytes]]) -> bool:
    async def scenario():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    return async_to_sync(scenario)()


def test_it_streams_a_job_to_a_token_with_no_origin(job, alice):
    headers = [token_header(alice)]

    async def scenario():
        communicator = WebsocketCommunicator(application, f"/ws/jobs/{job.id}/?after=0", headers=headers)
        connected, _ = await communicator.connect()
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return connected, message

    connected, message = async_to_sync(scenario)()
    assert connected
    assert message["type"] == "events"
    assert [event["seq"] for event in message["events"]] == [1, 2]
    assert message["events"][1]["data"]["message"] == "hello"


def test_it_refuses_a_wrong_token_even_with_a_valid_session(job, alice):
    headers = [(b"authorization", b"Token 0123456789abcdef0123456789abcdef01234567"),
               (b"origin", b"http://127.0.0.1"), (b"cookie", session_cookie(alice))]
    assert opens(f"/ws/jobs/{job.id}/", headers) is False
    assert opens(f"/ws/jobs/{job.id}/", [(b"authorization", b"Token")]) is False


def test_it_refuses_another_teams_token(job, charlie, team_c):
    assert opens(f"/ws/jobs/{job.id}/", [token_header(charlie)]) is False
    assert opens(f"/ws/projects/{job.project_id}/feed/", [token_header(charlie)]) is False


def test_it_refuses_an_inactive_users_token(job, alice):
    header = token_header(alice)
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert opens(f"/ws/jobs/{job.id}/", [header]) is False


def test_it_refuses_an_expired_or_revoked_token(job, alice):
    token, key = token_issue(user=alice)
    header = (b"authorization", f"Token {key}".encode())
    assert opens(f"/ws/jobs/{job.id}/", [header]) is True
    ApiToken.objects.filter(id=token.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert opens(f"/ws/jobs/{job.id}/", [header]) is False
    ApiToken.objects.filter(id=token.id).update(expires_at=timezone.now() + timedelta(days=1))
    token_revoke(token=token)
    assert opens(f"/ws/jobs/{job.id}/", [header]) is False


def test_a_session_still_needs_our_origin(job, alice):
    cookie = (b"cookie", session_cookie(alice))
    assert opens(f"/ws/jobs/{job.id}/", [(b"origin", b"http://127.0.0.1"), cookie]) is True
    assert opens(f"/ws/jobs/{job.id}/", [cookie]) is False  # no Origin: refused, as before
    assert opens(f"/ws/jobs/{job.id}/", [EVIL, cookie]) is False
    # Basic credentials are what a browser may add by itself: they do not skip the origin check.
    assert opens(f"/ws/jobs/{job.id}/", [EVIL, cookie, (b"authorization", b"Basic YWxpY2U6cHc=")]) is False


def test_a_token_is_not_ambient_so_the_origin_does_not_matter(job, alice):
    """A page on another site cannot make a browser send a Token header, so a handshake with one
    comes from a program that holds the token; the Origin it claims proves nothing either way."""
    assert opens(f"/ws/jobs/{job.id}/", [EVIL, token_header(alice)]) is True
