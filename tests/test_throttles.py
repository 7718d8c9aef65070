"""Rate limits (DRF throttles in the Redis cache) and sign-in lockouts (django-axes): past the limit a
429 with Retry-After, and nothing made. Each test sets small limits for itself."""

import uuid

import pytest
from django.test import Client

from tests.conftest import PASSWORD
from tests.test_uploads import create as create_upload
from webapp.core.models import ApiToken
from webapp.jobs.models import Job
from webapp.projects.models import Project
from webapp.uploads.models import Upload

PROBE = {"kind": "probe", "params": {"rounds": 1, "seconds_per_round": 0.1, "matrix_size": 64}}


@pytest.fixture(autouse=True)
def small_limits(settings):
    """Two of everything, counted under a key prefix of this test's own (the Redis cache is shared)."""
    settings.THROTTLE_RATES = {"login": "2/min", "uploads": "2/min", "jobs": "2/min"}
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Vision", created_by=alice)


def assert_too_many(response) -> None:
    assert response.status_code == 429, response.content
    assert 1 <= int(response["Retry-After"]) <= 60


def test_sign_in_on_the_page_is_limited_per_address(client, alice):
    for _ in range(2):
        assert client.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code == 200
    refused = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert_too_many(refused)
    assert "Try again in" in refused.content.decode()
    assert "_auth_user_id" not in client.session  # the right password past the limit signs nobody in
    assert client.get("/accounts/login/").status_code == 200  # showing the page is not an attempt


def test_tokens_are_limited_per_address(client, alice):
    for _ in range(2):
        assert client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}).status_code == 200
    assert_too_many(client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}))
    assert ApiToken.objects.count() == 2


def test_uploads_are_limited_per_user(alice, bob, project):
    client = Client()
    client.force_login(alice)
    for _ in range(2):
        assert create_upload(client, project, 10).status_code == 201
    refused = create_upload(client, project, 10)
    assert_too_many(refused)
    assert refused["Tus-Resumable"] == "1.0.0"
    assert Upload.objects.count() == 2
    others = Client()
    others.force_login(bob)
    assert create_upload(others, project, 10).status_code == 201  # per user: bob has his own count


def test_job_submissions_are_limited_per_user_and_reading_is_not(alice, project):
    client = Client()
    client.force_login(alice)
    url = f"/api/v1/projects/{project.id}/jobs/"
    for _ in range(2):
        assert client.post(url, PROBE, content_type="application/json").status_code == 201
    assert_too_many(client.post(url, PROBE, content_type="application/json"))
    assert_too_many(client.post(f"/projects/{project.id}/jobs/probe/new/", PROBE["params"]))  # the form shares it
    assert Job.objects.count() == 2
    assert client.get(url).status_code == 200


def test_wrong_passwords_lock_that_username_out_on_the_page_and_the_token_endpoint(settings, client, alice, bob):
    settings.THROTTLE_RATES = {"login": "1000/min"}
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    page = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert_too_many_minutes(page)
    assert "wrong passwords" in page.content.decode() and "_auth_user_id" not in client.session
    token = client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD})
    assert_too_many_minutes(token)
    assert "wrong passwords" in token.json()["detail"] and not ApiToken.objects.exists()
    # the lockout is alice's from this address: bob signs in
    assert client.post("/api/v1/auth/token/", {"username": "bob", "password": PASSWORD}).status_code == 200


def assert_too_many_minutes(response) -> None:
    assert response.status_code == 429, response.content
    assert 60 < int(response["Retry-After"]) <= 15 * 60
