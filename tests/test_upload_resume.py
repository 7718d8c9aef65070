"""A real tus client against a real server: an upload interrupted halfway — the server even
restarted — resumes where it stopped and yields the same checksum."""

import hashlib
import os

import pytest
from webapp.core.tokens import token_issue
from tusclient import client

from tests.servers import start_daphne
from webapp.projects.models import Project
from webapp.uploads.models import Upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CHUNK = 256 * 1024


def test_an_interrupted_upload_resumes_on_a_restarted_server_with_the_same_checksum(alice, team_a, child_env, log_dir, tmp_path):
    project = Project.objects.create(team=team_a, name="Vision", created_by=alice)
    headers = {"Authorization": f"Token {token_issue(user=alice)[1]}"}
    archive = tmp_path / "data.tar"
    archive.write_bytes(os.urandom(3 * 1024 * 1024 + 12345))
    metadata = {"filename": archive.name, "project": str(project.id)}

    first, first_url = start_daphne(child_env, log_dir)
    try:
        uploader = client.TusClient(f"{first_url}/api/v1/uploads/", headers=headers).uploader(
            file_path=str(archive), chunk_size=CHUNK, metadata=metadata
        )
        uploader.upload(stop_at=archive.stat().st_size // 2)  # the connection "drops" here
        path = uploader.url.removeprefix(first_url)
    finally:
        first.stop()
    upload = Upload.objects.get()
    assert 0 < upload.offset < upload.length and not upload.complete

    second, second_url = start_daphne(child_env, log_dir)
    try:
        resumed = client.TusClient(f"{second_url}/api/v1/uploads/", headers=headers).uploader(
            file_path=str(archive), url=f"{second_url}{path}", chunk_size=CHUNK
        )
        assert resumed.offset == upload.offset  # asked the server (HEAD) where to go on from
        resumed.upload()
    finally:
        second.stop()
    upload.refresh_from_db()
    assert upload.complete
    assert upload.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
