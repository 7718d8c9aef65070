"""Multi-GPU hosts: the launcher's plan of one worker per GPU (or per group of GPUs), what a
worker says of the GPUs it owns, and trainings on several GPUs of one host: routed to a queue
only a worker owning that many takes, refused up front when the fleet has none."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.helpers import make_dataset, signed_in
from tests.jobs_helpers import make_project
from tests.servers import wait_for
from webapp.celery import QUEUES
from webapp.hosts.models import WorkerHost
from webapp.jobs.models import Job, JobInput
from webapp.registry.models import Model
from workers.gpus import Worker, _option, plan
from workers.pipeline.hostinfo import owned_gpus

ARGS = ["-Q", "train", "--hostname", "train@%h", "--loglevel", "INFO"]


def test_a_host_without_a_gpu_runs_the_usual_single_worker():
    (worker,) = plan(["-Q", "train,optimize", "-c", "2", "--hostname", "local@%h"], [])
    assert worker.argv == ("celery", "-A", "webapp", "worker", "-Q", "train,optimize", "-c", "2", "--hostname", "local@%h")
    assert worker.gpus == () and worker.environment() == dict(os.environ)  # nothing pinned


def test_one_worker_per_gpu_each_pinned_under_its_own_name():
    workers = plan([*ARGS, "-c", "4"], ["0", "1", "2", "3"])
    assert [w.name for w in workers] == [f"train-gpu{i}@%h" for i in range(4)]
    assert [w.environment()["CUDA_VISIBLE_DEVICES"] for w in workers] == ["0", "1", "2", "3"]
    for worker in workers:
        argv = list(worker.argv)
        assert argv[:4] == ["celery", "-A", "webapp", "worker"]
        assert (_option(argv, "-Q", "--queues"), _option(argv, "-c", "--concurrency")) == ("train", "1")
        assert _option(argv, "-n", "--hostname") == worker.name and argv.count("--hostname") == 1
        assert "--loglevel" in argv


def test_a_worker_owning_several_gpus_also_takes_trainings_on_that_many():
    # GPUs 4-7 of the host are this launcher's (CUDA_VISIBLE_DEVICES=4,5,6,7), in workers of 4 and the rest
    big, small = plan(ARGS, ["4", "5", "6", "7", "8", "9"], per_worker=4)
    assert (big.name, big.gpus, big.environment()["CUDA_VISIBLE_DEVICES"]) == ("train-gpu4-7@%h", ("4", "5", "6", "7"), "4,5,6,7")
    assert _option(list(big.argv), "-Q", "--queues") == "train,train_gpus_2,train_gpus_4"
    assert _option(list(small.argv), "-Q", "--queues") == "train,train_gpus_2"
    # each queue a worker takes is one the Celery app declares
    for worker in (big, small):
        assert set(_option(list(worker.argv), "-Q", "--queues").split(",")) <= set(QUEUES)


def test_the_launcher_passes_a_stop_on_to_every_worker(tmp_path):
    """Two stand-in workers that record their pid and GPU, then wait; SIGTERM to the launcher ends both."""
    record = ("import os, pathlib, sys, time; "
              "pathlib.Path(sys.argv[1]).write_text(f'{os.getpid()} {os.environ[\"CUDA_VISIBLE_DEVICES\"]}'); "
              "time.sleep(60)")
    workers = [Worker(f"w{gpu}@%h", (str(gpu),), (sys.executable, "-c", record, str(tmp_path / f"w{gpu}"))) for gpu in (0, 1)]
    launcher = subprocess.Popen([sys.executable, "-c", f"import sys; from workers.gpus import Worker, run; sys.exit(run({workers!r}))"],
                                cwd=Path(__file__).resolve().parent.parent)
    try:
        wait_for(lambda: all((tmp_path / f"w{gpu}").exists() and (tmp_path / f"w{gpu}").read_text() for gpu in (0, 1)),
                 timeout=30, what="both workers to start")
        seen = [(tmp_path / f"w{gpu}").read_text().split() for gpu in (0, 1)]
        assert [gpu for _, gpu in seen] == ["0", "1"]  # each pinned to its own
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 128 + signal.SIGTERM  # the workers ended on it (a Celery worker: 0)
        assert not any(psutil.pid_exists(int(pid)) and psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
                       for pid, _ in seen)
    finally:
        launcher.kill()


def test_a_worker_says_which_gpus_of_the_host_it_owns(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, GPU-5e1f")
    assert owned_gpus() == ["3", "GPU-5e1f"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert owned_gpus() is None


# --- trainings on several GPUs ------------------------------------------------------------------


@pytest.fixture
def vision(team_a):
    return make_project(team_a, "Vision")


def submit(user, project, **params):
    dataset = project.datasets.first() or make_dataset(project)
    return signed_in(user).post(f"/api/v1/projects/{project.id}/train/",
                                {"dataset": dataset.id, "model_name": "colours", "architecture": "small_cnn", **params},
                                content_type="application/json")


@pytest.mark.django_db
def test_a_training_on_more_gpus_than_any_worker_owns_is_refused_in_words(alice, vision):
    WorkerHost.objects.create(hostname="train-gpu0@gpu-a", queues=["train"])
    WorkerHost.objects.create(hostname="train-gpu0-1@gpu-b", queues=["train", "train_gpus_2"])
    response = submit(alice, vision, gpus=4)
    assert response.status_code == 400
    assert response.json()["params.gpus"] == [
        "No worker of this site trains on 4 GPUs of one host (the most is 2); ask for 2. An administrator "
        "starts workers that own several GPUs (docs/operations.md)."]
    assert not Job.objects.exists() and not JobInput.objects.exists() and not Model.objects.exists()
    assert submit(alice, vision, gpus=3).status_code == 400  # not a count a training may ask for


@pytest.mark.django_db
def test_a_training_on_several_gpus_waits_on_their_queue(alice, vision):
    WorkerHost.objects.create(hostname="train-gpu0-1@gpu-b", queues=["train", "train_gpus_2"])
    response = submit(alice, vision, gpus=2)
    assert response.status_code == 201, response.content
    job = Job.objects.get(id=response.json()["id"])
    assert (job.queue, job.params["gpus"]) == ("train_gpus_2", 2)
    one = Job.objects.get(id=submit(alice, vision, model_name="other").json()["id"])
    assert (one.queue, one.params["gpus"]) == ("train", 1)  # the default: one GPU, any train worker


@pytest.mark.django_db
def test_the_form_offers_as_many_gpus_as_a_worker_trains_on(alice, vision):
    WorkerHost.objects.create(hostname="train-gpu0-1@gpu-b", queues=["train", "train_gpus_2"])
    page = signed_in(alice).get(f"/projects/{vision.id}/train/").content.decode()
    options = re.search(r'<select name="gpus".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option value="(\d)"( selected)?( disabled)?>', options) == [
        ("1", " selected", ""), ("2", "", ""), ("4", "", " disabled"), ("8", "", " disabled")]
    assert "The most a worker of this site trains on: 2." in page


@pytest.mark.django_db
def test_the_form_refuses_more_gpus_than_any_worker_trains_on(alice, vision):
    dataset = make_dataset(vision)
    form = {"dataset": dataset.id, "model_name": "colours", "architecture": "small_cnn", "epochs": 1, "gpus": "2",
            "idempotency_key": "form-gpus"}
    response = signed_in(alice).post(f"/projects/{vision.id}/train/", form, follow=True)
    assert "No worker of this site trains on 2 GPUs of one host; ask for 1 GPU." in response.content.decode()
    assert not Job.objects.exists() and not Model.objects.exists()
    response = signed_in(alice).post(f"/projects/{vision.id}/train/", {**form, "gpus": "1", "idempotency_key": "form-1"})
    assert response.status_code == 302 and Job.objects.get().params["gpus"] == 1
