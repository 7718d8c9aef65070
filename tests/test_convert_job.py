"""Conversion through the real worker: a PyTorch artifact becomes an IR child in its lineage,
checked against its source; refusals and access."""

import openvino as ov
import pytest
from django.core.files.storage import default_storage

from tests import model_builders as build
from tests.archive_builders import class_entries, make_zip
from tests.helpers import signed_in, uploaded
from tests.servers import wait_for
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.projects.models import Project
from webapp.registry.models import Artifact, Model

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SMALL = {"input_size": [32, 32], "layout": "NCHW", "color": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Vision", created_by=alice)


def finished(job_id: int) -> Job:
    wait_for(lambda: Job.objects.get(id=job_id).is_terminal, timeout=180, what=f"job {job_id}")
    return Job.objects.get(id=job_id)


def source_artifact(client, alice, project, path) -> Artifact:
    Model.objects.get_or_create(project=project, name="tiny", defaults={"preprocessing": SMALL})
    response = client.post(f"/api/v1/projects/{project.id}/models/", {"name": "tiny", "uploads": [str(uploaded(alice, project, path).id)]},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    job = finished(response.json()["job"])
    assert job.state == JobState.SUCCEEDED, job.error
    return Artifact.objects.get(id=response.json()["id"])


def test_a_torchscript_model_converts_to_a_checked_ir_in_its_lineage(worker_host, alice, project, tmp_path):
    client = signed_in(alice)
    source = source_artifact(client, alice, project, build.torchscript(tmp_path / "tiny.pt"))
    response = client.post(f"/api/v1/artifacts/{source.id}/convert/", {"shape": "dynamic_batch", "input_name": "image", "samples": 6},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    job = finished(response.json()["id"])
    assert job.state == JobState.SUCCEEDED, job.error
    stages = [event.data["stage"] for event in job.events.filter(kind="stage")]
    assert {"loading", "converting", "saving", "verifying", "publishing"} <= set(stages), stages
    ir = Artifact.objects.get(id=job.result["artifact"])
    assert (ir.origin, ir.format, ir.parent_id, ir.job_id, ir.precision) == ("converted", "openvino_ir", source.id, job.id, "fp32")
    equivalence = ir.metrics["conversion"]["equivalence"]
    assert equivalence["within_tolerance"] and equivalence["max_abs_diff"] <= 1e-4 and equivalence["top1_agreement"] == 1.0
    assert equivalence["samples"] == 6 and equivalence["shapes"] == [[1, 3, 32, 32], [5, 3, 32, 32]]
    assert ir.inspection["inputs"][0]["name"] == "image" and ir.inspection["inputs"][0]["shape"] == [None, 3, 32, 32]
    model = ov.Core().read_model(default_storage.path(f"{ir.storage_prefix}/model.xml"))
    assert model.input(0).get_partial_shape()[0].is_dynamic
    page = client.get(f"/artifacts/{ir.id}/").content.decode()
    assert "Matches its source" in page and "equivalence" in page
    assert f"/artifacts/{source.id}/" in client.get(f"/models/{source.model_id}/").content.decode()


def test_equivalence_is_checked_on_a_datasets_images_with_fp16_weights(worker_host, alice, project, tmp_path):
    client = signed_in(alice)
    upload = uploaded(alice, project, make_zip(tmp_path / "pets.zip", class_entries(4)))
    created = client.post(f"/api/v1/projects/{project.id}/datasets/", {"name": "pets", "upload": str(upload.id)}, content_type="application/json")
    assert finished(Dataset.objects.get(id=created.json()["id"]).import_job_id).state == JobState.SUCCEEDED
    source = source_artifact(client, alice, project, build.onnx_file(tmp_path / "tiny.onnx"))
    response = client.post(f"/api/v1/artifacts/{source.id}/convert/", {"precision": "fp16", "dataset": created.json()["id"],
                           "embed_preprocessing": True, "samples": 200}, content_type="application/json")
    job = finished(response.json()["id"])
    assert job.state == JobState.SUCCEEDED, job.error
    ir = Artifact.objects.get(id=job.result["artifact"])
    conversion = ir.metrics["conversion"]
    assert conversion["equivalence"]["source"] == "dataset" and conversion["equivalence"]["within_tolerance"]
    assert conversion["equivalence"]["reference"].startswith("the ONNX model run by onnxruntime")  # in the jail
    assert ir.precision == "fp16" and conversion["preprocessing"]
    # more inputs asked for than the dataset has: all of its validation images, and the log says so
    val = Dataset.objects.get(id=created.json()["id"]).items.filter(split="val").count()
    assert conversion["equivalence"]["samples"] == val < 200
    said = [event.data["message"] for event in job.events.filter(kind="log")]
    assert any(f"has {val} validation images: the check runs on those, not the 200 asked for" in line for line in said)
    assert ir.inspection["inputs"][0]["dtype"] == "u8"


def test_an_ir_cannot_be_converted_and_outsiders_cannot_convert(worker_host, alice, charlie, team_c, project, tmp_path):
    client = signed_in(alice)
    ir = source_artifact(client, alice, project, build.ir_zip(tmp_path / "ir.zip"))
    response = client.post(f"/api/v1/artifacts/{ir.id}/convert/", {}, content_type="application/json")
    assert response.status_code == 400 and "already an OpenVINO IR" in str(response.json())
    assert signed_in(charlie).post(f"/api/v1/artifacts/{ir.id}/convert/", {}, content_type="application/json").status_code == 404


def test_bad_parameters_are_refused_per_field(worker_host, alice, project, tmp_path):
    client = signed_in(alice)
    source = source_artifact(client, alice, project, build.onnx_file(tmp_path / "tiny.onnx"))
    response = client.post(f"/api/v1/artifacts/{source.id}/convert/", {"shape": "round", "opset": 3, "samples": 0},
                           content_type="application/json")
    assert response.status_code == 400
    assert {"params.shape", "params.opset", "params.samples"} <= set(response.json())


def test_a_conversion_whose_ir_does_not_fit_the_quota_fails_and_keeps_nothing(worker_host, alice, project, tmp_path):
    from webapp.core.quota import team_bytes_used, team_quota_bytes
    from webapp.uploads.models import Upload

    client = signed_in(alice)
    source = source_artifact(client, alice, project, build.torchscript(tmp_path / "tiny.pt"))
    stored = set(default_storage.listdir("artifacts")[0])
    response = client.post(f"/api/v1/artifacts/{source.id}/convert/", {}, content_type="application/json")
    assert response.status_code == 201, response.content  # it fits when it starts
    job_id = response.json()["id"]
    # While it converts (in its jail, seconds before it publishes), another upload fills the quota.
    wait_for(lambda: Job.objects.get(id=job_id).events.filter(kind="stage", data__stage="converting").exists(),
             timeout=120, what="the conversion to start converting")
    Upload.objects.create(team=project.team, created_by=alice, filename="filler", expires_at="2100-01-01T00:00Z",
                          length=team_quota_bytes(project.team) - team_bytes_used(project.team))
    job = finished(job_id)
    assert job.state == JobState.FAILED and job.error.startswith("What this job made was not kept: This needs")
    assert list(Artifact.objects.values_list("id", flat=True)) == [source.id]
    assert set(default_storage.listdir("artifacts")[0]) == stored
