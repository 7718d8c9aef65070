"""Small helpers shared by integration tests: signed-in clients and finished uploads."""

import io
from pathlib import Path

from django.test import Client

from tests.conftest import PASSWORD
from webapp.projects.models import Project
from webapp.uploads import services as uploads
from webapp.uploads.models import Upload


def signed_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def uploaded(user, project: Project, path: Path) -> Upload:
    """A finished upload, sent through the same service the tus endpoint calls."""
    data = path.read_bytes()
    upload = uploads.upload_create(team=project.team, user=user, filename=path.name, length=len(data), metadata={})
    return uploads.upload_append(upload=upload, offset=0, body=io.BytesIO(data), length=len(data))
