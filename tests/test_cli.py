"""The `vintner` command line as a user runs it: the installed program in a subprocess, with its
own HOME, against daphne serving the real app and a real Celery worker. Nothing is mocked."""

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from webapp.core.models import ApiToken

from tests.archive_builders import colour_classes, make_zip
from tests.conftest import PASSWORD
from tests.jobs_helpers import make_project
from tests.servers import ServiceProcess, free_port, wait_for, wait_listening
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.uploads.models import Upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

VINTNER = Path(sys.executable).with_name("vintner")  # what `make` installs (pip install -e .)


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def cli_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("VINTNER_URL", "VINTNER_TOKEN", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def vintner(home: Path, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    assert VINTNER.exists(), "the vintner command is not installed: run `make test` (or pip install -e .)"
    return subprocess.run([str(VINTNER), *map(str, args)], env=cli_env(home), cwd=home, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def login(home: Path, url: str, user) -> None:
    done = vintner(home, "login", "--url", url, "--username", user.username, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr


@pytest.fixture
def project(team_a):
    return make_project(team_a, "Vision")


@pytest.fixture
def alice_home(home, live_server_url, alice, team_a) -> Path:
    login(home, live_server_url, alice)
    return home


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_wrong_password_is_refused_in_words_and_nothing_is_stored(home, live_server_url, alice):
    done = vintner(home, "login", "--url", live_server_url, "--username", "alice", "--password-stdin", stdin="wrong\n")
    assert done.returncode == 2
    assert "Login failed: Unable to log in with provided credentials." in done.stderr
    assert not (home / ".config" / "vintner" / "config.json").exists()
    not_logged_in = vintner(home, "projects", "list")
    assert not_logged_in.returncode == 2 and "log in first" in not_logged_in.stderr


def test_login_keeps_the_token_private_and_lists_only_the_users_projects(alice_home, project, charlie, team_c):
    make_project(team_c, "Charlie's secret")
    config = alice_home / ".config" / "vintner" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["username"] == "alice"

    listed = vintner(alice_home, "projects", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = [re.split(r"\s{2,}", line) for line in listed.stdout.splitlines()]
    assert header == ["ID", "TEAM", "NAME"]
    assert rows == [[str(project.id), f"Team A ({project.team_id})", "Vision"]]
    assert "secret" not in listed.stdout
    as_json = vintner(alice_home, "projects", "list", "--json")
    assert [p["name"] for p in json.loads(as_json.stdout)] == ["Vision"]

    token = json.loads(config.read_text())["token"]
    logout = vintner(alice_home, "logout")
    assert "The token is revoked" in logout.stderr and not config.exists()
    assert not ApiToken.objects.filter(digest=ApiToken.digest_of(token)).exists()  # a copy of it elsewhere signs in no more
    assert vintner(alice_home, "projects", "list").returncode == 2


def test_a_dataset_upload_shows_progress_and_follows_its_import_to_the_end(alice_home, project, worker_host, tmp_path):
    archive = make_zip(tmp_path / "colours.zip", colour_classes())
    done = vintner(alice_home, "datasets", "upload", project.id, archive, "--name", "colours", "--val-fraction", "0.25")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "upload colours.zip: 100%" in done.stderr  # the plain progress lines of a non-terminal
    dataset = Dataset.objects.get(project=project)
    assert dataset.state == "ready" and dataset.image_count == 72 and dataset.val_fraction == 0.25
    assert dataset.archive_sha256 == sha256(archive)
    assert f"Job #{dataset.import_job_id} dataset_import succeeded" in done.stdout
    assert "INFO" in done.stdout  # the import's log lines, as they came
    assert re.search(r"^images:\s+72$", done.stdout, re.MULTILINE)


def test_a_text_file_uploads_as_a_text_dataset_with_its_columns_named(alice_home, project, worker_host, tmp_path):
    from tests.text_builders import topic_rows, write_rows

    rows = write_rows(tmp_path / "reviews.jsonl", [{"body": row["text"], "topic": row["label"]} for row in topic_rows(30)])
    done = vintner(alice_home, "datasets", "upload", project.id, rows, "--name", "reviews", "--modality", "text",
                   "--text-column", "body", "--label-column", "topic")
    assert done.returncode == 0, done.stdout + done.stderr
    dataset = Dataset.objects.get(project=project)
    assert (dataset.state, dataset.modality, dataset.image_count, dataset.columns) == (
        "ready", "text", 30, {"text": "body", "label": "topic"})
    assert re.search(r"^rows:\s+30$", done.stdout, re.MULTILINE) and not re.search(r"^images:", done.stdout, re.MULTILINE)
    listed = vintner(alice_home, "datasets", "list", project.id)
    assert re.search(r"reviews\s+1\s+ready\s+text\s+30 rows\s+3$", listed.stdout, re.MULTILINE), listed.stdout


def test_an_interrupted_upload_resumes_where_it_stopped(alice_home, project, tmp_path):
    archive = make_zip(tmp_path / "big.zip", [*colour_classes(per_class=4), ("padding.bin", os.urandom(6 * 2**20))])
    args = [str(VINTNER), "datasets", "upload", str(project.id), str(archive), "--name", "big", "--chunk-size", "64K",
            "--no-follow"]
    first = subprocess.Popen(args, env=cli_env(alice_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        upload = wait_for(lambda: Upload.objects.filter(offset__gt=0).first(), timeout=60, what="the first chunk",
                          interval=0.02)
    finally:
        first.send_signal(signal.SIGKILL)  # no clean-up of any kind: a power cut
        first.communicate(timeout=10)
    upload.refresh_from_db()
    assert 0 < upload.offset < upload.length, "the upload finished before it could be interrupted"

    second = vintner(alice_home, "datasets", "upload", project.id, archive, "--name", "big", "--no-follow")
    assert second.returncode == 0, second.stderr
    assert f"Resuming upload {upload.id} of big.zip" in second.stderr
    assert not Upload.objects.exclude(id=upload.id).exists()  # the same upload, finished, not a second one
    dataset = Dataset.objects.get(project=project)
    assert dataset.upload_id in (upload.id, None)  # None once a worker imported it (the upload is then deleted)
    assert second.stdout.strip() == str(dataset.id)
    assert dataset.archive_sha256 == sha256(archive)
    assert str(upload.id) not in (alice_home / ".cache" / "vintner" / "uploads.json").read_text()  # used: forgotten


def test_a_probe_is_followed_live_and_exits_0(alice_home, project, worker_host):
    done = vintner(alice_home, "jobs", "submit", "probe", "--project", project.id, "-p", "rounds=3",
                   "-p", "seconds_per_round=0.2", "-p", "matrix_size=64")
    assert done.returncode == 0, done.stdout + done.stderr
    job = Job.objects.get(project=project)
    assert job.state == JobState.SUCCEEDED
    assert job.params["rounds"] == 3 and job.params["seconds_per_round"] == 0.2
    rounds = [line for line in done.stdout.splitlines() if " Round " in line]
    assert [line.split(" Round ")[1].split(":")[0] for line in rounds] == ["1/3", "2/3", "3/3"]  # each once, in order
    assert f"Job #{job.id} probe succeeded" in done.stdout and "devices.cpu.median_gflops" in done.stdout

    shown = vintner(alice_home, "jobs", "show", job.id, "--json")
    assert json.loads(shown.stdout)["state"] == "succeeded"


def test_parameters_the_api_refuses_exit_2_with_its_words(alice_home, project):
    done = vintner(alice_home, "jobs", "submit", "probe", "--project", project.id, "-p", "rounds=0")
    assert done.returncode == 2
    assert "params.rounds: Ensure this value is greater than or equal to 1. (HTTP 400)" in done.stderr
    assert not Job.objects.exists()
    usage = vintner(alice_home, "jobs", "submit", "convert", "--project", project.id)
    assert usage.returncode == 2 and "give --artifact ID" in usage.stderr


def test_a_job_that_fails_on_the_worker_exits_1_with_its_error(alice_home, project, worker_host, tmp_path):
    junk = tmp_path / "weights.bin"
    junk.write_bytes(b"these are not the weights you are looking for" * 100)
    done = vintner(alice_home, "models", "upload", project.id, junk, "--name", "junk")
    assert done.returncode == 1, done.stdout + done.stderr
    job = Job.objects.get(project=project, kind="model_import")
    assert job.state == JobState.FAILED and job.error
    assert f"Job #{job.id} model_import failed" in done.stderr and job.error in done.stderr


def test_a_model_uploads_and_its_artifact_downloads_with_the_same_bytes(alice_home, project, worker_host, tmp_path):
    from tests.model_builders import onnx_file

    model = onnx_file(tmp_path / "tiny.onnx")
    uploaded = vintner(alice_home, "models", "upload", project.id, model, "--name", "tiny", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    artifact = json.loads(uploaded.stdout)
    assert artifact["state"] == "ready" and artifact["format"] == "onnx"

    folder = tmp_path / "downloads"
    folder.mkdir()
    # `python -m vintner_cli` is the same program as the installed command
    done = subprocess.run([sys.executable, "-m", "vintner_cli", "artifacts", "download", str(artifact["id"]),
                           "-o", str(folder)], env=cli_env(alice_home), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    saved = Path(done.stdout.strip())
    assert saved.parent == folder and saved.name == f"tiny-onnx-fp32-{artifact['id']}.onnx"  # Content-Disposition's name
    assert sha256(saved) == artifact["sha256"] == sha256(model)
    assert "SHA-256 verified" in done.stderr
    again = vintner(alice_home, "artifacts", "download", artifact["id"], "-o", folder)
    assert again.returncode == 2 and "exists" in again.stderr

    # every preprocessing setting from the command line; those not given stay
    from webapp.registry.models import Model

    settings = vintner(alice_home, "models", "set", artifact["model"], "--input-size", "96x128", "--resize", "bicubic",
                       "--crop", "0.9", "--fit", "stretch", "--value-range", "0-255", "--mean", "103.9,116.8,123.7",
                       "--std", "1", "--color", "BGR")
    assert settings.returncode == 0, settings.stderr
    assert "stretch, crop 0.9, resize bicubic" in settings.stdout
    expected = {"input_size": [96, 128], "fit": "stretch", "crop": 0.9, "resize": "bicubic", "value_range": "0-255",
                "mean": [103.9, 116.8, 123.7], "std": [1.0, 1.0, 1.0], "color": "BGR", "layout": "NCHW"}
    assert Model.objects.get(id=artifact["model"]).preprocessing == expected
    refused = vintner(alice_home, "models", "set", artifact["model"], "--crop", "2", "--value-range", "0-1")
    assert refused.returncode != 0 and "crop" in refused.stderr and "0–255 units" in refused.stderr
    assert Model.objects.get(id=artifact["model"]).preprocessing == expected


def test_an_outsider_cannot_follow_or_see_a_job(home, live_server_url, project, alice, charlie, team_c):
    job = Job.objects.create(project=project, kind="probe", created_by=alice, queue="optimize")
    login(home, live_server_url, charlie)
    for command in (["jobs", "follow", job.id], ["jobs", "show", job.id]):
        done = vintner(home, *command)
        assert done.returncode == 2
        assert f"Job {job.id} was not found, or you may not see it" in done.stderr


def test_following_survives_a_server_restart_and_shows_each_event_once(home, alice, project, child_env, log_dir,
                                                                       worker_host):
    """The websocket drops with the server; the client reconnects with after=<last seq>."""
    port = free_port()

    def serve() -> ServiceProcess:
        server = ServiceProcess(f"daphne-cli-{port}", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                                       "webapp.asgi:application"], child_env, log_dir)
        wait_listening(server, port)
        return server

    server = serve()
    try:
        login(home, f"http://127.0.0.1:{port}", alice)
        follower = subprocess.Popen(
            [str(VINTNER), "jobs", "submit", "probe", "--project", str(project.id), "-p", "rounds=12",
             "-p", "seconds_per_round=0.25", "-p", "matrix_size=64"],
            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        job = wait_for(lambda: Job.objects.filter(project=project, state=JobState.RUNNING).first(), timeout=60,
                       what="the probe to start", interval=0.05)
        wait_for(lambda: Job.objects.get(id=job.id).progress > 0, timeout=30, what="a round", interval=0.05)
        server.stop()
        time.sleep(1.0)  # the job goes on without the web server; events pile up in the database
        server = serve()
        out, err = follower.communicate(timeout=120)
    finally:
        server.stop()
    assert follower.returncode == 0, out + err
    assert "Connection lost" in err
    rounds = [line.split(" Round ")[1].split(":")[0] for line in out.splitlines() if " Round " in line]
    assert rounds == [f"{n}/12" for n in range(1, 13)]
