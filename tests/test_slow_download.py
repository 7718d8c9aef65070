"""A client that reads a big download slowly does not make the web process hold the file: daphne
sends the next block only when the connection has taken the last (webapp/core/response_pacing.py)."""

import io
import socket
import time
from urllib.parse import urlsplit

import psutil
import pytest
from django.core.files.storage import default_storage

from tests.helpers import make_artifact, make_model
from tests.servers import start_daphne
from webapp.core.tokens import token_issue
from webapp.projects.models import Project
from webapp.registry.models import Artifact

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
MiB = 2**20
SIZE = 256 * MiB


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MiB


def test_a_slow_reader_of_a_big_download_does_not_grow_the_web_process(alice, team_a, child_env, log_dir):
    project = Project.objects.create(team=team_a, name="Vision", created_by=alice)
    artifact = make_artifact(make_model(project, alice), fmt="onnx")
    path = default_storage.path(f"{artifact.storage_prefix}/model.onnx")
    default_storage.save(f"{artifact.storage_prefix}/model.onnx", io.BytesIO(b""))
    with open(path, "r+b") as file:
        file.truncate(SIZE)  # sparse: 256 MiB to send, none of it on disk
    Artifact.objects.filter(id=artifact.id).update(files=[{"name": "model.onnx", "size": SIZE, "sha256": "0" * 64}],
                                                    primary="model.onnx")
    token = token_issue(user=alice)[1]
    server, url = start_daphne(child_env, log_dir)
    try:
        host = urlsplit(url)
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        reader.connect((host.hostname, host.port))
        reader.sendall(f"GET /api/v1/artifacts/{artifact.id}/download/ HTTP/1.1\r\nHost: {host.netloc}\r\n"
                       f"Authorization: Token {token}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += reader.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        before = rss_mb(server.pid)
        # Read nothing for two seconds: unpaced, daphne reads the whole file into memory by then.
        grown = 0.0
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and grown < 64:
            grown = rss_mb(server.pid) - before
            time.sleep(0.05)
        assert grown < 64, f"the web process grew by {grown:.0f} MiB while the client read nothing"
        # Then everything arrives.
        received = len(head.split(b"\r\n\r\n", 1)[1])
        while chunk := reader.recv(4 * MiB):
            received += len(chunk)
        reader.close()
        assert received == SIZE
    finally:
        server.stop()
