"""The many-host tier: Postgres, a real S3 server, Redis, daphne, a `train` worker and an
`optimize` worker (concurrency 2), each with its own data folder. A user's whole journey goes
through the command line (dataset upload, train, convert, quantize, benchmark, download) while
each worker is killed in the middle of a job and replaced by another host. Then: nothing is
lost, no host's local path is in the database, and the bucket and the rows agree object for
object, checksums included."""

import hashlib
import json
import signal
import subprocess
import tempfile
import zipfile
from pathlib import Path

import psycopg
import pytest

from tests.archive_builders import colour_classes, make_zip
from tests.hosts import Hosts
from tests.servers import wait_for
from tests.test_cli import VINTNER, cli_env

pytestmark = [pytest.mark.integration, pytest.mark.hosts]
PASSWORD = "correct horse battery staple"
SETUP = f"""
from django.contrib.auth import get_user_model
from webapp.projects.models import Project
from webapp.teams.services import team_create
alice = get_user_model().objects.create_user("alice", password={PASSWORD!r})
print(Project.objects.create(team=team_create(name="Vision", creator=alice), name="Grapes").id)
"""


@pytest.fixture(scope="module")
def hosts(log_dir):
    root = Path(tempfile.mkdtemp(prefix="vintner-hosts-"))
    hosts = Hosts(root, log_dir)
    try:
        hosts.manage("migrate", "--noinput")
        hosts.project = int(hosts.manage("shell", "-c", SETUP).split()[-1])
        hosts.url = hosts.web()
        yield hosts
    finally:
        hosts.stop()


def cli(home: Path, *args) -> dict:
    done = subprocess.run([str(VINTNER), *map(str, args)], env=cli_env(home), cwd=home, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else {}


def row(hosts: Hosts, sql: str, *params):
    with psycopg.connect(hosts.postgres.url.replace("postgres://", "postgresql://")) as db:
        return db.execute(sql, params).fetchone()


def rows(hosts: Hosts, sql: str, *params) -> list:
    with psycopg.connect(hosts.postgres.url.replace("postgres://", "postgresql://")) as db:
        return db.execute(sql, params).fetchall()


def job_where(hosts: Hosts, job_id: int, condition: str, timeout: float = 180):
    return wait_for(lambda: row(hosts, f"SELECT state, attempts, result, error FROM jobs_job WHERE id = %s AND {condition}",
                                job_id), timeout=timeout, what=f"job {job_id}: {condition}", interval=0.3)


def succeeded(hosts: Hosts, job_id: int, timeout: float = 240) -> dict:
    state, attempts, result, error = job_where(hosts, job_id, "state IN ('succeeded', 'failed', 'cancelled')", timeout)
    assert state == "succeeded", error
    return {**result, "attempts": attempts}


def test_the_journey_survives_killed_workers_and_leaves_storage_exact(hosts, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([str(VINTNER), "login", "--url", hosts.url, "--username", "alice", "--password-stdin"],
                          env=cli_env(home), cwd=home, input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    train = hosts.worker("train-a", "train")
    optimize = hosts.worker("optimize-a", "optimize", concurrency=2)

    archive = make_zip(tmp_path / "colours.zip", colour_classes())
    dataset = cli(home, "datasets", "upload", hosts.project, archive, "--name", "colours", "--no-follow", "--json")["id"]
    wait_for(lambda: row(hosts, "SELECT 1 FROM datasets_dataset WHERE id = %s AND imported_at IS NOT NULL", dataset),
             timeout=120, what="the dataset import", interval=0.3)

    # training: its worker is killed after an epoch's checkpoint; another GPU host goes on from it
    job = cli(home, "jobs", "submit", "train", "--project", hosts.project, "--dataset", dataset, "--no-follow", "--json",
              "-p", "model_name=colours", "-p", "architecture=small_cnn", "-p", "input_size=16", "-p", "batch_size=8",
              "-p", "workers=0", "-p", "lr=0.01", "-p", "augment=none", "-p", "epochs=4")["id"]
    job_where(hosts, job, "checkpoint IS NOT NULL")
    train.stop(signal.SIGKILL)
    train = hosts.worker("train-b", "train")
    trained = succeeded(hosts, job)
    assert trained["attempts"] == 2
    fp32 = trained["artifact"]

    # two jobs at once on the optimize host, which is killed while both run; the next one does both
    convert = cli(home, "jobs", "submit", "convert", "--artifact", fp32, "--no-follow", "--json")["id"]
    measure = cli(home, "jobs", "submit", "benchmark", "--artifact", fp32, "--no-follow", "--json", "-p", "seconds=1")["id"]
    job_where(hosts, convert, "state = 'running'")
    job_where(hosts, measure, "state = 'running'")
    optimize.stop(signal.SIGKILL)
    optimize = hosts.worker("optimize-b", "optimize", concurrency=2)
    ir = succeeded(hosts, convert)["artifact"]
    assert succeeded(hosts, measure)["attempts"] == 2

    quantize = cli(home, "jobs", "submit", "quantize", "--artifact", ir, "--dataset", dataset, "--no-follow", "--json",
                   "-p", "method=ptq")["id"]
    int8 = succeeded(hosts, quantize)["artifact"]
    succeeded(hosts, cli(home, "jobs", "submit", "benchmark", "--artifact", int8, "--no-follow", "--json",
                         "-p", "seconds=1")["id"])

    # the download streams from the bucket through the web host, checksums and all
    folder = tmp_path / "download"
    folder.mkdir()
    cli(home, "artifacts", "download", int8, "-o", folder)
    (bundle,) = folder.glob("*.zip")
    with zipfile.ZipFile(bundle) as zipped:
        sums = dict(reversed(line.split("  ", 1)) for line in zipped.read("SHA256SUMS").decode().splitlines())
        assert {name: hashlib.sha256(zipped.read(name)).hexdigest() for name in sums} == sums
    train.stop()
    optimize.stop()

    # nothing lost, nothing left over
    assert rows(hosts, "SELECT id, state FROM jobs_job WHERE state <> 'succeeded'") == []
    hosts.manage("sweep_storage", "--grace", "0")
    check_bucket_against_rows(hosts)
    dump = hosts.postgres.dump()
    assert not any(str(data) in dump for data in hosts.data_dirs), "a host's local path is in the database"


def check_bucket_against_rows(hosts: Hosts) -> None:
    """Every object in the bucket is named by a row, and every object a row names is there with
    the checksum the row records."""
    client = hosts.s3.client()
    objects = {o["Key"]: o for page in client.get_paginator("list_objects_v2").paginate(Bucket=hosts.s3.BUCKET)
               for o in page.get("Contents", [])}
    named = {}
    for artifact_id, listing in rows(hosts, "SELECT id, files FROM registry_artifact WHERE ready_at IS NOT NULL"):
        for entry in listing:
            named[f"artifacts/{artifact_id}/{entry['name']}"] = entry["sha256"]
    for dataset_id, path, thumb in rows(hosts, "SELECT dataset_id, path, thumb FROM datasets_datasetitem"):
        named[f"datasets/{dataset_id}/images/{path}"] = named[f"datasets/{dataset_id}/{thumb}"] = None
    for (upload_id,) in rows(hosts, "SELECT id FROM uploads_upload WHERE completed_at IS NOT NULL"):
        named[f"uploads/{upload_id}"] = None
    imported = {f"datasets/{i}/" for (i,) in rows(hosts, "SELECT id FROM datasets_dataset WHERE imported_at IS NOT NULL")}
    # a dataset's own index files are its row's too
    unnamed = [key for key in objects if key not in named and not any(key.startswith(p) for p in imported)]
    assert unnamed == [], "objects no row names"
    assert [key for key in named if key not in objects] == [], "rows naming missing objects"
    for key, digest in named.items():
        if digest:
            body = client.get_object(Bucket=hosts.s3.BUCKET, Key=key)["Body"]
            hasher = hashlib.sha256()
            for block in iter(lambda: body.read(2**20), b""):
                hasher.update(block)
            assert hasher.hexdigest() == digest, key
