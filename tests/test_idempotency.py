"""Every job submission is idempotent: the API's Idempotency-Key header, and the one-time key every
job form carries, make a double click or a retried request answer with the first job."""

import re

import pytest

from tests.helpers import make_artifact, make_dataset, make_model, signed_in, uploaded
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job
from webapp.projects.models import Project
from webapp.registry.models import Artifact, Origin


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Vision", created_by=alice)


@pytest.fixture
def rows(project, alice):
    """A ready dataset, a model, its state_dict and an FP32 IR converted from it."""
    dataset = make_dataset(project)
    model = make_model(project, alice)
    source = make_artifact(model, fmt="state_dict", origin=Origin.TRAINED)
    return {"dataset": dataset, "source": source, "ir": make_artifact(model, parent=source)}


def api_requests(project, rows) -> dict[str, tuple[str, dict]]:
    dataset, source, ir = rows["dataset"].id, rows["source"], rows["ir"]
    return {
        "train": (f"/api/v1/projects/{project.id}/train/",
                  {"dataset": dataset, "model_name": "colours-2", "architecture": "small_cnn", "epochs": 1}),
        "convert": (f"/api/v1/artifacts/{source.id}/convert/", {}),
        "quantize": (f"/api/v1/artifacts/{ir.id}/quantize/", {"dataset": dataset}),
        "benchmark": (f"/api/v1/artifacts/{ir.id}/benchmark/", {"hints": ["latency"], "seconds": 1}),
        "evaluate": (f"/api/v1/artifacts/{ir.id}/evaluate/", {"dataset": dataset}),
        "probe": (f"/api/v1/projects/{project.id}/jobs/", {"kind": "probe", "params": {"rounds": 1}}),
    }


@pytest.mark.parametrize("kind", ["train", "convert", "quantize", "benchmark", "evaluate", "probe"])
def test_a_repeated_idempotency_key_makes_one_job_through_the_api(alice, project, rows, kind):
    client = signed_in(alice)
    url, body = api_requests(project, rows)[kind]
    first = client.post(url, body, content_type="application/json", headers={"Idempotency-Key": f"{kind}-1"})
    again = client.post(url, body, content_type="application/json", headers={"Idempotency-Key": f"{kind}-1"})
    assert first.status_code == 201, first.content
    assert again.status_code in (200, 201) and again.json()["id"] == first.json()["id"]
    other = client.post(url, body, content_type="application/json", headers={"Idempotency-Key": f"{kind}-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert Job.objects.filter(kind=kind).count() == 2


def form_key(page: str, kind: str) -> str:
    """The one-time key of a kind's job form on a rendered page."""
    form = re.search(rf'<form [^>]*data-testid="{kind}-form"[^>]*>.*?</form>', page, re.S)
    return re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', form.group(0)).group(1)


def test_a_double_submitted_form_makes_one_job_for_every_job_form(alice, project, rows):
    client = signed_in(alice)
    ir, source, dataset = rows["ir"], rows["source"], rows["dataset"]
    ir_page = client.get(f"/artifacts/{ir.id}/").content.decode()
    forms = {
        "train": (client.get(f"/projects/{project.id}/train/").content.decode(), f"/projects/{project.id}/train/",
                  {"dataset": dataset.id, "model_name": "colours-2", "architecture": "small_cnn", "epochs": 1}),
        "convert": (client.get(f"/artifacts/{source.id}/").content.decode(), f"/artifacts/{source.id}/convert/", {}),
        "quantize": (ir_page, f"/artifacts/{ir.id}/quantize/", {"dataset": dataset.id, "method": "ptq"}),
        "benchmark": (ir_page, f"/artifacts/{ir.id}/benchmark/", {"hints": ["latency"], "seconds": "1"}),
        "evaluate": (ir_page, f"/artifacts/{ir.id}/evaluate/", {"dataset": dataset.id, "split": "val"}),
        "probe": (client.get(f"/projects/{project.id}/").content.decode(), f"/projects/{project.id}/jobs/probe/new/",
                  {"rounds": 1}),
    }
    for kind, (page, action, fields) in forms.items():
        key = form_key(page, kind)
        first = client.post(action, {**fields, "idempotency_key": key})
        again = client.post(action, {**fields, "idempotency_key": key})
        job = Job.objects.get(kind=kind)  # one row, not two
        assert first.status_code == again.status_code == 302, (kind, first.status_code)
        assert first["Location"] == again["Location"] == f"/jobs/{job.id}/"
    again = client.get(f"/projects/{project.id}/").content.decode()
    assert form_key(again, "probe") != form_key(forms["probe"][0], "probe")  # each render its own: a new job


def test_a_repeated_dataset_or_model_from_an_upload_makes_one_of_each(alice, project, tmp_path):
    archive = tmp_path / "colours.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(b"\0" * 64)
    client = signed_in(alice)
    for key, (url, body, table) in enumerate([
        (f"/api/v1/projects/{project.id}/datasets/", {"name": "colours", "upload": str(uploaded(alice, project, archive).id)},
         Dataset),
        (f"/api/v1/projects/{project.id}/models/", {"name": "net", "uploads": [str(uploaded(alice, project, model_file).id)]},
         Artifact),
    ]):
        first = client.post(url, body, content_type="application/json", headers={"Idempotency-Key": str(key)})
        again = client.post(url, body, content_type="application/json", headers={"Idempotency-Key": str(key)})
        assert first.status_code == again.status_code == 201, again.content
        assert first.json()["id"] == again.json()["id"] and table.objects.count() == 1
    assert Job.objects.count() == 2  # one import, one inspection


def test_a_key_that_started_another_kind_of_job_is_a_conflict(alice, project, rows):
    client = signed_in(alice)
    url, body = api_requests(project, rows)["benchmark"]
    assert client.post(url, body, content_type="application/json", headers={"Idempotency-Key": "k"}).status_code == 201
    url, body = api_requests(project, rows)["evaluate"]
    reused = client.post(url, body, content_type="application/json", headers={"Idempotency-Key": "k"})
    assert reused.status_code == 409 and "benchmark job" in str(reused.json())
    assert list(Job.objects.values_list("kind", flat=True)) == ["benchmark"]


def test_a_repeated_import_retry_starts_one_import(alice, project, tmp_path):
    archive = tmp_path / "colours.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: it is never opened here
    dataset = Dataset.objects.create(project=project, name="colours", created_by=alice, archive_name="colours.zip",
                                     upload=uploaded(alice, project, archive))  # no import job yet: "failed"
    client = signed_in(alice)
    for _ in range(2):
        response = client.post(f"/api/v1/datasets/{dataset.id}/import/", headers={"Idempotency-Key": "retry-1"})
        assert response.status_code == 202, response.content
    assert Job.objects.filter(kind="dataset_import").count() == 1
    assert response.json()["import_job"] == Job.objects.get().id
