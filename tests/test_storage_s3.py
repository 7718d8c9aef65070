"""webapp/core/files.py against a real S3 server (SeaweedFS's gateway): transfers go through boto3's
managed, multipart transfer, retried publishing replaces instead of adding copies, and downloads
stream from the storage object (zip bundles included)."""

import hashlib
import io
import os
import signal
import subprocess
import sys
import zipfile
from datetime import timedelta

import pytest
import requests
from django.test import override_settings

from tests.helpers import SMALL, make_artifact, signed_in
from tests.jobs_helpers import make_project
from tests.servers import S3Server, wait_for
from webapp.core import files
from webapp.core.sweep import storage_sweep
from webapp.registry.models import Model

pytestmark = pytest.mark.django_db
BIG = 20 * 2**20 + 5  # past the multipart threshold, not a whole number of parts


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3")
    server = S3Server(folder, folder).start()
    yield server
    server.stop()


@pytest.fixture
def on_s3(s3):
    env = s3.env()
    storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": env["S3_BUCKET"], "endpoint_url": env["S3_ENDPOINT_URL"], "access_key": env["S3_ACCESS_KEY"],
        "secret_key": env["S3_SECRET_KEY"], "region_name": env["S3_REGION"], "default_acl": None}}
    with override_settings(STORAGES={"default": storage, "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}):
        yield s3
        files.delete_tree("t")


def test_a_retried_publish_replaces_the_killed_attempts_files_instead_of_adding_copies(on_s3, tmp_path):
    first = tmp_path / "first"
    (first / "images").mkdir(parents=True)
    for name in ("images/a.png", "images/b.png", "left-by-the-killed-attempt.txt"):
        (first / name).write_bytes(b"old " + name.encode())
    files.publish_tree(first, "t/dataset")
    again = tmp_path / "again"
    (again / "images").mkdir(parents=True)
    for name in ("images/a.png", "images/b.png"):
        (again / name).write_bytes(b"new " + name.encode())
    files.publish_tree(again, "t/dataset")
    assert sorted(files.keys("t/dataset")) == ["t/dataset/images/a.png", "t/dataset/images/b.png"]
    staged = files.local_tree("t/dataset", tmp_path / "staged")
    assert (staged / "images" / "a.png").read_bytes() == b"new images/a.png"
    assert not again.exists() and not list(tmp_path.glob("staged/**/*.part*"))


def test_a_large_file_goes_up_in_parts_and_comes_back_whole(on_s3, tmp_path):
    source = tmp_path / "archive.zip"
    source.write_bytes(os.urandom(BIG))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    files.store_copy(source, "t/archive.zip")
    head = on_s3.client().head_object(Bucket=on_s3.BUCKET, Key="t/archive.zip")
    assert head["ContentLength"] == BIG and "-" in head["ETag"]  # a multipart upload's ETag: "<md5>-<parts>"
    (tmp_path / "scratch").mkdir()
    copy = files.local_file("t/archive.zip", tmp_path / "scratch")
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    assert b"".join(files.read_blocks("t/archive.zip")) == source.read_bytes()
    files.delete_file("t/archive.zip")
    files.delete_file("t/archive.zip")  # gone already: not an error
    assert list(files.keys("t")) == []


def test_downloads_stream_from_the_stored_object(on_s3, team_a, alice, tmp_path):
    model = Model.objects.create(project=make_project(team_a), name="streamed", preprocessing=SMALL, created_by=alice)
    artifact = make_artifact(model)
    payload = {"model.xml": b"<net/>", "model.bin": os.urandom(3 * 2**20 + 1)}
    artifact.files = []
    for name, data in payload.items():
        (tmp_path / name).write_bytes(data)
        files.store_copy(tmp_path / name, f"{artifact.storage_prefix}/{name}")
        artifact.files.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    artifact.save(update_fields=["files"])
    response = signed_in(alice).get(f"/api/v1/artifacts/{artifact.id}/download/")
    assert response.status_code == 200 and response.streaming
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert bundle.testzip() is None
    assert {name: bundle.read(name) for name in payload} == payload
    assert "metadata.json" in bundle.namelist() and "SHA256SUMS" in bundle.namelist()
    files.delete_tree(artifact.storage_prefix)
    artifact.files = artifact.files[1:]
    files.store_copy(tmp_path / "model.bin", f"{artifact.storage_prefix}/model.bin")
    artifact.save(update_fields=["files"])
    single = signed_in(alice).get(f"/api/v1/artifacts/{artifact.id}/download/")
    assert single.status_code == 302  # straight from the bucket, by a presigned link
    fetched = requests.get(single["Location"], timeout=30)
    assert fetched.content == payload["model.bin"]
    assert fetched.headers["Content-Disposition"].endswith('streamed-openvino_ir-fp32-%d.bin"' % artifact.id)
    assert requests.get(single["Location"].split("?")[0], timeout=30).status_code == 403  # unsigned: refused
    files.delete_tree(artifact.storage_prefix)


PUBLISH = """
import django, sys
from pathlib import Path
django.setup()
from webapp.core import files
files.publish_tree(Path(sys.argv[1]), sys.argv[2])
"""


def test_a_publish_killed_halfway_leaves_nothing_once_swept(on_s3, child_env, tmp_path):
    """A worker killed while its output goes up: a finished object and a multipart upload in
    flight, both named by no row. The sweep removes the one and aborts the other."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a-labels.txt").write_text("cat\ndog\n")  # goes up first, whole
    with open(folder / "model.bin", "wb") as weights:
        weights.truncate(1024 * 2**20)  # long enough to be killed in the middle of its parts
    prefix = "artifacts/987654"  # no artifact row has this id
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISH, str(folder), prefix],
                                 env={**child_env, **on_s3.env()}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = on_s3.client()
    try:
        wait_for(lambda: client.list_multipart_uploads(Bucket=on_s3.BUCKET).get("Uploads"), timeout=60,
                 what="the weights' multipart upload to begin", interval=0.05)
    finally:
        publisher.send_signal(signal.SIGKILL)
        publisher.wait()
    assert list(files.keys(prefix)) == [f"{prefix}/a-labels.txt"]
    swept = storage_sweep(grace=timedelta(0))
    assert swept["objects"] >= 1 and swept["unfinished_uploads"] >= 1
    assert list(files.keys(prefix)) == [] and not client.list_multipart_uploads(Bucket=on_s3.BUCKET).get("Uploads")
