"""The tus endpoint: protocol, limits, access, checksums, resume and expiry."""

import base64
import hashlib
import os
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from webapp.projects.models import Project
from webapp.teams.models import Membership, Role
from webapp.uploads import services
from webapp.uploads.models import Upload

TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}
pytestmark = pytest.mark.django_db


def metadata(**pairs) -> str:
    return ",".join(f"{key} {base64.b64encode(str(value).encode()).decode()}" for key, value in pairs.items())


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Vision", created_by=alice)


def create(client: Client, project: Project, length: int, **extra_metadata):
    meta = metadata(filename="data.zip", project=project.id, **extra_metadata)
    return client.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH=str(length), HTTP_UPLOAD_METADATA=meta, **TUS)


def patch(client: Client, location: str, offset: int, chunk: bytes):
    return client.generic(
        "PATCH", location, chunk, content_type="application/offset+octet-stream", HTTP_UPLOAD_OFFSET=str(offset), **TUS
    )


def upload_all(client: Client, location: str, data: bytes, chunk: int) -> None:
    for offset in range(0, len(data), chunk):
        response = patch(client, location, offset, data[offset : offset + chunk])
        assert response.status_code == 204, response.content
        assert int(response["Upload-Offset"]) == min(offset + chunk, len(data))


def test_it_advertises_the_protocol(alice):
    response = signed_in(alice).options("/api/v1/uploads/")
    assert response.status_code == 204
    assert response["Tus-Version"] == "1.0.0"
    assert "creation" in response["Tus-Extension"] and "termination" in response["Tus-Extension"]
    assert int(response["Tus-Max-Size"]) > 0


def test_it_uploads_in_chunks_and_publishes_the_file_with_its_checksum(alice, project):
    data = os.urandom(300_000)
    client = signed_in(alice)
    response = create(client, project, len(data))
    assert response.status_code == 201, response.content
    assert response["Upload-Offset"] == "0" and response["Tus-Resumable"] == "1.0.0"
    location = response["Location"]
    head = client.head(location, **TUS)
    assert head.status_code == 200 and head["Upload-Offset"] == "0" and head["Upload-Length"] == str(len(data))
    upload_all(client, location, data, 65_536)
    upload = Upload.objects.get()
    assert upload.complete and upload.sha256 == hashlib.sha256(data).hexdigest()
    with default_storage.open(upload.storage_key, "rb") as stored:
        assert stored.read() == data
    assert not services.part_path(upload).exists()
    assert client.head(location, **TUS)["Upload-Offset"] == str(len(data))


def test_it_hashes_from_disk_when_another_process_received_the_first_chunks(alice, project):
    data = os.urandom(200_000)
    client = signed_in(alice)
    location = create(client, project, len(data))["Location"]
    assert patch(client, location, 0, data[:120_000]).status_code == 204
    services._hashers.items.clear()  # as after a restart of the web server
    assert patch(client, location, 120_000, data[120_000:]).status_code == 204
    assert Upload.objects.get().sha256 == hashlib.sha256(data).hexdigest()


def test_a_chunk_sent_to_a_finished_upload_is_a_conflict_that_changes_nothing(alice, project):
    data = os.urandom(1000)
    client = signed_in(alice)
    location = create(client, project, len(data))["Location"]
    upload_all(client, location, data, 1000)
    before = Upload.objects.get()
    for offset in (len(data), 0):  # its part file is gone: opening it was a 500
        response = patch(client, location, offset, b"more")
        assert response.status_code == 409 and response.json()["detail"] == "This upload is already complete."
    after = Upload.objects.get()
    assert (after.offset, after.sha256, after.completed_at, after.expires_at) == (
        before.offset, before.sha256, before.completed_at, before.expires_at)
    with default_storage.open(after.storage_key, "rb") as stored:
        assert stored.read() == data
    assert not services.part_path(after).exists()


def test_it_refuses_a_file_that_arrived_damaged_and_keeps_nothing(alice, project):
    data = b"x" * 1000
    client = signed_in(alice)
    location = create(client, project, len(data), sha256="0" * 64)["Location"]
    response = patch(client, location, 0, data)
    assert response.status_code == 460
    assert "arrived damaged" in response.json()["detail"]
    assert not Upload.objects.exists()
    assert not any(services.part_path(Upload(id=location.rstrip("/").rsplit("/", 1)[1])).parent.glob("*.part"))


def test_it_answers_a_wrong_offset_with_409_and_the_real_one(alice, project):
    client = signed_in(alice)
    location = create(client, project, 100)["Location"]
    assert patch(client, location, 0, b"a" * 40).status_code == 204
    response = patch(client, location, 10, b"b" * 40)
    assert response.status_code == 409
    assert "40 bytes received" in response.json()["detail"]
    assert client.head(location, **TUS)["Upload-Offset"] == "40"


def test_it_refuses_bytes_past_the_declared_length(alice, project):
    client = signed_in(alice)
    location = create(client, project, 10)["Location"]
    response = patch(client, location, 0, b"a" * 11)
    assert response.status_code == 400 and "declared length" in response.json()["detail"]


def test_it_refuses_chunks_larger_than_the_limit(alice, project, settings):
    settings.UPLOAD_CHUNK_MAX_BYTES = 1024
    client = signed_in(alice)
    location = create(client, project, 5000)["Location"]
    response = patch(client, location, 0, b"a" * 2048)
    assert response.status_code == 413 and "smaller chunks" in response.json()["detail"]


def test_it_requires_the_tus_header_and_the_right_content_type(alice, project):
    client = signed_in(alice)
    response = client.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH="10", HTTP_UPLOAD_METADATA=metadata(filename="a", project=project.id))
    assert response.status_code == 412 and response["Tus-Version"] == "1.0.0"
    location = create(client, project, 10)["Location"]
    response = client.generic("PATCH", location, b"a", content_type="application/json", HTTP_UPLOAD_OFFSET="0", **TUS)
    assert response.status_code == 415


def test_it_needs_a_file_name_a_project_and_a_length(alice, project):
    client = signed_in(alice)
    no_name = client.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH="10", HTTP_UPLOAD_METADATA=metadata(project=project.id), **TUS)
    assert no_name.status_code == 400 and "name the file" in no_name.json()["detail"]
    no_project = client.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH="10", HTTP_UPLOAD_METADATA=metadata(filename="a"), **TUS)
    assert no_project.status_code == 400 and "project" in no_project.json()["detail"]
    no_length = client.post("/api/v1/uploads/", HTTP_UPLOAD_METADATA=metadata(filename="a", project=project.id), **TUS)
    assert no_length.status_code == 400 and "Upload-Length" in no_length.json()["detail"]


def test_it_enforces_the_team_quota_with_a_clear_message(alice, project, team_a):
    team_a.storage_quota_gb = 1
    team_a.save()
    client = signed_in(alice)
    assert create(client, project, 2**30 - 1000).status_code == 201
    response = create(client, project, 2000)
    assert response.status_code == 413
    assert "quota" in response.json()["detail"] and "Team A" in response.json()["detail"]


def test_it_refuses_files_over_the_size_limit(alice, project, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    response = create(signed_in(alice), project, 1001)
    assert response.status_code == 413 and "largest upload" in response.json()["detail"]


def test_an_outsider_cannot_create_in_or_see_another_teams_upload(alice, charlie, team_c, project):
    location = create(signed_in(alice), project, 10)["Location"]
    outsider = signed_in(charlie)
    assert create(outsider, project, 10).status_code == 404
    assert outsider.head(location, **TUS).status_code == 404
    assert patch(outsider, location, 0, b"a").status_code == 404
    assert outsider.delete(location, **TUS).status_code == 404
    assert Upload.objects.get().offset == 0


def test_a_viewer_may_not_upload(alice, bob, project, team_a):
    Membership.objects.filter(team=team_a, user=bob).update(role=Role.VIEWER)
    assert create(signed_in(bob), project, 10).status_code == 403


def test_a_teammate_cannot_write_into_someone_elses_upload(alice, bob, project):
    location = create(signed_in(alice), project, 10)["Location"]
    assert patch(signed_in(bob), location, 0, b"a").status_code == 404


def test_termination_removes_the_upload_and_its_bytes(alice, project):
    client = signed_in(alice)
    location = create(client, project, 100)["Location"]
    patch(client, location, 0, b"a" * 50)
    upload = Upload.objects.get()
    assert client.delete(location, **TUS).status_code == 204
    assert not Upload.objects.exists() and not services.part_path(upload).exists()


def test_abandoned_uploads_expire_but_claimed_ones_stay(alice, project):
    client = signed_in(alice)
    create(client, project, 100)
    create(client, project, 100)
    stale, claimed = Upload.objects.all()
    Upload.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    services.upload_claim(upload=claimed)
    assert services.uploads_expire() == 1
    assert list(Upload.objects.all()) == [claimed]
    assert not services.part_path(stale).exists()


def test_token_clients_can_upload(alice, project):
    from webapp.core.tokens import token_issue

    client = Client(HTTP_AUTHORIZATION=f"Token {token_issue(user=alice)[1]}")
    location = create(client, project, 4)["Location"]
    assert patch(client, location, 0, b"abcd").status_code == 204
    assert Upload.objects.get().sha256 == hashlib.sha256(b"abcd").hexdigest()
