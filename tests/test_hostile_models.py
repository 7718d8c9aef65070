"""Hostile models through the real worker: a TorchScript classifier and a .pt2 program whose
forward() reads the server's secret key and writes over files outside its job (a planted file,
another file in storage, the database, its own stored file) with nothing but torch.from_file.
Every job kind that runs such a model runs it in the jail: the job ends, in words, nothing it
aimed at changed, nothing new appeared in the data folder, and the worker's next job runs.

The thieves are real: test_it_builds_thieves_that_steal_outside_a_jail runs them unjailed on
decoy files. In the jail the first file operation fails, so each test puts a different one first."""

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection

from tests import model_builders as build
from tests.archive_builders import colour_classes, make_zip
from tests.helpers import COLOURS, SMALL, signed_in, uploaded
from tests.jobs_helpers import events, make_project, wait_done
from tests.test_train_job import TINY
from webapp.datasets import services as datasets
from webapp.jobs import services as jobs
from webapp.jobs.models import Job, JobState
from webapp.optimize import services as optimize
from webapp.projects.models import Project
from webapp.registry import services as registry
from webapp.registry.models import Artifact, Model, Origin

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
QUICK = {"rounds": 2, "seconds_per_round": 0.1, "matrix_size": 64}
SQLITE_HEADER = b"SQLite format 3\x00"
# What an upload's inspection would say of a thief that behaved while it was inspected (it could
# attack only later, on a batch of two, say): the later jobs must not trust that it is harmless.
INSPECTION = {"format": "torchscript", "inputs": [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "f32"}],
              "outputs": [{"name": "output", "shape": [1, 3], "dtype": "f32"}], "parameters": 127,
              "precision": "fp32", "traces": True, "trace_error": "", "details": {}}


@dataclass
class Fence:
    """The server's files a thief aims at, and how to tell that none of them changed."""

    data: Path
    secret: bytes
    planted: Path  # outside storage, made for the thief to write over: all zeros
    victim: Path  # another file in storage: all zeros
    database: Path | None  # SQLite's file, when the tests run on SQLite

    @property
    def size(self) -> int:
        return len(self.secret)

    @property
    def key(self) -> Path:
        return self.data / "secret_key"

    def targets(self) -> list[Path]:
        return [self.planted, self.victim] + ([self.database] if self.database else [])

    def listing(self) -> set[str]:
        """Every path in the data folder but storage, the jobs' scratch folders and the database's
        journal, which come and go with any job."""
        journal = f"{self.database.name}-" if self.database else "\0"
        paths = (path.relative_to(self.data) for path in self.data.rglob("*") if not path.name.startswith(journal))
        return {path.as_posix() for path in paths if path.parts[0] not in ("media", "scratch")}

    def problems(self, before: set[str], *, own: str = "\0") -> list[str]:
        """What changed; `own`: the prefix of what the job itself may add (a training's image-cache
        entry, the only folder the jail may write besides its own)."""
        found = []
        if self.key.read_bytes() != self.secret:
            found.append("the secret key changed")
        for path in (self.planted, self.victim):
            if path.read_bytes() != bytes(self.size):
                found.append(f"{path.name} was written")
        if self.database:
            # read by another process: closing any file of the database in this one would drop the
            # SQLite connection's POSIX locks, and with them what keeps the WAL file in place
            head = subprocess.run(["head", "-c", "4096", str(self.database)], capture_output=True, check=True).stdout
            if not head.startswith(SQLITE_HEADER) or self.secret in head or b"X" * self.size in head:
                found.append("the database's header was written")
            with connection.cursor() as cursor:
                if cursor.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    found.append("the database is damaged")
        found += [f"new in the data folder: {path}" for path in sorted(self.listing() - before)
                  if path not in ("cache", "cache/images") and not path.startswith(own)]
        return found


@pytest.fixture
def fence(worker_host) -> Fence:
    data = settings.DATA_DIR
    secret = (data / "secret_key").read_bytes()
    assert len(secret) >= 32  # the key the site signs sessions with
    (data / "media").mkdir(exist_ok=True)
    engine = connection.settings_dict["ENGINE"]
    database = Path(connection.settings_dict["NAME"]) if engine.endswith("sqlite3") else None
    fence = Fence(data=data, secret=secret, planted=data / "planted", victim=data / "media" / "victim.bin",
                  database=database)
    for path in (fence.planted, fence.victim):
        path.write_bytes(bytes(fence.size))
    yield fence
    for path in (fence.planted, fence.victim):
        path.unlink(missing_ok=True)


@pytest.fixture
def project(team_a, alice) -> Project:
    project = make_project(team_a)
    Model.objects.create(project=project, name="thief", labels=COLOURS, preprocessing=SMALL, created_by=alice)
    return project


def read(path: Path) -> str:
    return f"read:{path}"


def write(path: Path) -> str:
    return f"write:{path}"


def published(project: Project, alice, tmp_path: Path, make, *, fmt: str = "torchscript",
              primary: str = "model.pt") -> Artifact:
    """A ready artifact of the thief, published as its import would publish it; `make(path, own)`
    writes the model file, `own` being where it will be stored (so that it can aim at itself)."""
    model = Model.objects.get(project=project, name="thief")
    artifact = Artifact.objects.create(model=model, origin=Origin.UPLOADED, created_by=alice, num_classes=3)
    folder = tmp_path / "artifact"
    folder.mkdir()
    make(folder / primary, Path(default_storage.path(f"{artifact.storage_prefix}/{primary}")))
    registry.artifact_publish(artifact=artifact, folder=folder, fmt=fmt, primary=primary,
                              inspection={**INSPECTION, "format": fmt})
    artifact.refresh_from_db()
    assert artifact.state == "ready"
    return artifact


def colours(alice, project: Project, tmp_path: Path):
    upload = uploaded(alice, project, make_zip(tmp_path / "colours.zip", colour_classes(per_class=6)))
    dataset = datasets.dataset_create(project=project, user=alice, name="colours", upload=upload, val_fraction=0.25)
    assert wait_done(dataset.import_job_id).state == JobState.SUCCEEDED
    dataset.refresh_from_db()
    return dataset


def jailed(job: Job) -> bool:
    """The worker ran the job's step in its jail: it says so when it does not (VINTNER_JAIL=off)."""
    return settings.VINTNER_JAIL == "bwrap" and not [
        event for event in events(job.id, "log") if "without a jail" in event.data["message"]]


def stopped(job: Job, aimed: Path, why: str) -> Job:
    """The hostile job, ended in words after the model ran in the jail and its first file
    operation was refused: torch's error names the file it aimed at and the system's reason."""
    job = wait_done(job.id, timeout=180)
    assert job.state == JobState.FAILED and jailed(job), job.result
    assert f"unable to open file <{aimed}>" in job.error and why in job.error, job.error
    return job


def refused(job: Job) -> Job:
    """A conversion's end: OpenVINO and the ONNX exporter read the graph and have no from_file;
    the PyTorch source's reference run (in the jail, beside the conversion) is not waited for."""
    job = wait_done(job.id, timeout=180)
    assert job.state == JobState.FAILED and jailed(job), job.result
    assert "has no conversion for aten::from_file" in job.error and "ONNX opset 17 has no aten::from_file" in job.error
    return job


def probe_runs(project: Project, alice) -> bool:
    job, _ = jobs.job_submit(project=project, user=alice, kind="probe", params=QUICK)
    return wait_done(job.id, timeout=120).state == JobState.SUCCEEDED


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["torchscript", "torch_export"])
def test_it_builds_thieves_that_steal_outside_a_jail(fmt, tmp_path):
    secret, target = tmp_path / "secret_key", tmp_path / "target"
    secret.write_bytes(b"s3cret" * 8)
    target.write_bytes(bytes(48))
    if fmt == "torchscript":
        module = torch.jit.load(str(build.thief_torchscript(tmp_path / "m.pt", [read(secret), write(target)], 48)))
    else:
        module = torch.export.load(str(build.thief_export(tmp_path / "m.pt2", str(secret), str(target), 48))).module()
    assert list(module(torch.randn(1, 3, 16, 16)).shape) == [1, 3]
    assert target.read_bytes() == b"s3cret" * 8


def test_it_inspects_an_uploaded_thief_that_cannot_read_the_secret_key(fence, alice, project, tmp_path):
    path = build.thief_torchscript(tmp_path / "thief.pt", [read(fence.key), *map(write, fence.targets())], fence.size)
    upload = uploaded(alice, project, path)
    before = fence.listing()
    response = signed_in(alice).post(f"/api/v1/projects/{project.id}/models/",
                                     {"name": "thief", "uploads": [str(upload.id)]}, content_type="application/json")
    assert response.status_code == 201, response.content
    job = wait_done(response.json()["job"], timeout=180)
    # the inspection ran its forward() in the jail: it failed there, which an inspection reports
    artifact = Artifact.objects.get(id=response.json()["id"])
    assert job.state == JobState.SUCCEEDED and jailed(job), job.error_detail
    assert artifact.inspection["traces"] is False
    # the interpreter's own words, last line first: the key is not there to open
    assert artifact.inspection["trace_error"].startswith("forward() failed on a [1, 3, 16, 16] float input: RuntimeError: "
                                                         "unable to open file")
    assert "No such file or directory" in artifact.inspection["trace_error"]
    assert fence.problems(before) == []
    assert probe_runs(project, alice)


def test_it_converts_no_thief(fence, alice, project, tmp_path):
    artifact = published(project, alice, tmp_path, lambda path, own: build.thief_torchscript(
        path, [write(own), read(fence.key), *map(write, fence.targets())], fence.size))
    stored = Path(default_storage.path(f"{artifact.storage_prefix}/{artifact.primary}"))
    before = fence.listing()
    refused(optimize.artifact_convert(artifact=artifact, user=alice, params={}))
    assert sha256(stored) == artifact.sha256
    assert not Artifact.objects.filter(parent=artifact).exists()
    assert fence.problems(before) == []
    assert probe_runs(project, alice)


def test_it_quantizes_no_thief(fence, alice, project, tmp_path):
    dataset = colours(alice, project, tmp_path)
    artifact = published(project, alice, tmp_path, lambda path, own: build.thief_torchscript(
        path, [write(fence.planted), read(fence.key), write(fence.victim)], fence.size))
    before = fence.listing()
    refused(optimize.artifact_quantize(artifact=artifact, user=alice, dataset=dataset, params={"subset_size": 10}))
    assert not Artifact.objects.filter(parent=artifact).exists()
    assert fence.problems(before) == []
    assert probe_runs(project, alice)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the database is a file only on SQLite")
def test_it_benchmarks_no_thief_that_writes_over_the_database(fence, alice, project, tmp_path):
    artifact = published(project, alice, tmp_path, lambda path, own: build.thief_torchscript(
        path, [write(fence.database), read(fence.key), write(fence.planted)], fence.size))
    before = fence.listing()
    # the data folder in the jail is an empty one bubblewrap made (root's): no file, and none may be made
    stopped(optimize.artifact_benchmark(artifact=artifact, user=alice, params={"seconds": 1}),
            fence.database, "Permission denied")
    assert fence.problems(before) == []
    assert probe_runs(project, alice)


def test_it_evaluates_no_thief_that_writes_over_its_own_stored_file(fence, alice, project, tmp_path):
    dataset = colours(alice, project, tmp_path)
    artifact = published(project, alice, tmp_path, lambda path, own: build.thief_torchscript(
        path, [write(own), read(fence.key), write(fence.planted)], fence.size))
    stored = Path(default_storage.path(f"{artifact.storage_prefix}/{artifact.primary}"))
    before = fence.listing()
    # the one file it aims at that the jail shows it: its own input, bound read-only, and not its user's
    stopped(optimize.artifact_evaluate(artifact=artifact, user=alice, dataset=dataset, params={"split": "val"}),
            stored, "Permission denied")
    assert sha256(stored) == artifact.sha256
    assert fence.problems(before) == []
    assert probe_runs(project, alice)


def test_it_fine_tunes_no_thief_that_writes_over_another_file_in_storage(fence, alice, project, tmp_path):
    dataset = colours(alice, project, tmp_path)
    artifact = published(project, alice, tmp_path, lambda path, own: build.thief_torchscript(
        path, [write(fence.victim), read(fence.key), write(fence.planted)], fence.size))
    before = fence.listing()
    job = registry.model_train(project=project, user=alice, dataset=dataset, init=artifact,
                               params={"model_name": "tuned", **TINY, "epochs": 1})
    stopped(job, fence.victim, "Permission denied")  # its folder in the jail is bubblewrap's, empty
    assert not Artifact.objects.filter(model__name="tuned").exists()
    assert fence.problems(before, own=f"cache/images/dataset-{dataset.id}-") == []
    assert probe_runs(project, alice)


def test_it_imports_an_uploaded_pt2_thief_in_the_jail_without_running_it(fence, alice, project, tmp_path):
    # a .pt2's inspection reads its graph and runs nothing; it is still loaded in the jail
    path = build.thief_export(tmp_path / "thief.pt2", str(fence.key), str(fence.planted), fence.size)
    upload = uploaded(alice, project, path)
    before = fence.listing()
    response = signed_in(alice).post(f"/api/v1/projects/{project.id}/models/",
                                     {"name": "thief", "uploads": [str(upload.id)]}, content_type="application/json")
    assert response.status_code == 201, response.content
    job = wait_done(response.json()["job"], timeout=180)
    assert job.state == JobState.SUCCEEDED and jailed(job), job.error_detail
    assert Artifact.objects.get(id=response.json()["id"]).format == "torch_export"
    assert fence.problems(before) == []
    assert probe_runs(project, alice)


def test_it_benchmarks_no_pt2_thief_that_reads_the_secret_key(fence, alice, project, tmp_path):
    artifact = published(project, alice, tmp_path, lambda path, own: build.thief_export(
        path, str(fence.key), str(fence.victim), fence.size), fmt="torch_export", primary="model.pt2")
    before = fence.listing()
    stopped(optimize.artifact_benchmark(artifact=artifact, user=alice, params={"seconds": 1}),
            fence.key, "No such file or directory")
    assert fence.problems(before) == []
    assert probe_runs(project, alice)
