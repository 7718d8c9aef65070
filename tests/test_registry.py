"""Models through the real worker: each format uploaded, checked and inspected; hostile files
refused with nothing run and nothing kept; IR downloads that load and verify; who may see what."""

import hashlib
import io
import json
import zipfile
from pathlib import Path

import openvino as ov
import pytest
from django.core.files.storage import default_storage
from django.test import Client

from tests import model_builders as build
from tests.helpers import signed_in, uploaded
from tests.servers import wait_for
from webapp.jobs.models import Job, JobInput, JobState
from webapp.projects.models import Project
from webapp.registry.models import Artifact
from webapp.uploads.models import Upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]




def register(client: Client, user, project: Project, *paths: Path, name: str = "tiny", **fields) -> Artifact:
    ids = [str(uploaded(user, project, path).id) for path in paths]
    response = client.post(
        f"/api/v1/projects/{project.id}/models/", {"name": name, "uploads": ids, **fields}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    artifact = Artifact.objects.get(id=response.json()["id"])
    wait_for(lambda: Job.objects.get(id=artifact.job_id).is_terminal, timeout=120, what="the inspection job")
    artifact.refresh_from_db()
    return artifact


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Vision", created_by=alice)


@pytest.fixture
def client(alice) -> Client:
    return signed_in(alice)


@pytest.mark.parametrize("fmt, make, expected", [
    ("torchscript", lambda d: build.torchscript(d / "tiny.pt"), {"inputs": [1, 3, 32, 32], "outputs": [1, 3]}),
    ("torch_export", lambda d: build.torch_export(d / "tiny.pt2"), {"inputs": [1, 3, 32, 32], "outputs": [1, 3]}),
    ("onnx", lambda d: build.onnx_file(d / "tiny.onnx"), {"inputs": [1, 3, 32, 32], "outputs": [1, 3]}),
    ("openvino_ir", lambda d: build.ir_zip(d / "tiny-ir.zip"), {"inputs": [1, 3, 32, 32], "outputs": [1, 3]}),
])
def test_each_format_is_inspected_on_a_worker(fmt, make, expected, worker_host, alice, project, client, tmp_path):
    from webapp.registry.models import Model

    Model.objects.create(project=project, name="tiny", preprocessing={
        "input_size": [32, 32], "layout": "NCHW", "color": "RGB", "mean": [0.5], "std": [0.5]})
    artifact = register(client, alice, project, make(tmp_path))
    assert artifact.state == "ready", Job.objects.get(id=artifact.job_id).error
    facts = artifact.inspection
    assert artifact.format == fmt and facts["format"] == fmt
    assert facts["inputs"][0]["shape"] == expected["inputs"]
    assert facts["outputs"][0]["shape"] == expected["outputs"]
    assert facts["parameters"] == sum(p.numel() for p in build.tiny_net().parameters())
    assert artifact.precision == "fp32" and artifact.num_classes == 3
    if fmt in ("torchscript", "torch_export"):
        assert facts["traces"] is True
    main = default_storage.open(f"{artifact.storage_prefix}/{artifact.primary}").read()
    assert hashlib.sha256(main).hexdigest() == artifact.sha256
    assert not Upload.objects.exists()  # the files now live with the artifact


def test_a_state_dict_is_checked_against_its_architecture(worker_host, alice, project, client, tmp_path):
    weights = build.state_dict(tmp_path / "weights.pth")
    good = register(client, alice, project, weights, format="state_dict", architecture="mobilenet_v3_small", num_classes=3)
    assert good.state == "ready", good.job.error
    assert good.inspection["outputs"][0]["shape"] == [1, 3] and good.inspection["traces"] is True
    wrong = register(client, alice, project, build.state_dict(tmp_path / "again.pth"), name="other",
                     format="state_dict", architecture="mobilenet_v3_small", num_classes=5)
    assert wrong.state == "failed"
    assert "3" in wrong.job.error and "5" in wrong.job.error


def test_an_ir_pair_downloads_as_a_zip_that_loads_and_verifies(worker_host, alice, project, client, tmp_path):
    xml, bin_ = build.openvino_ir(tmp_path / "ir")
    artifact = register(client, alice, project, xml, bin_)
    assert artifact.state == "ready", artifact.job.error
    # Its graph is published to a column of its own, which the artifact's own loads leave out.
    assert "graph" not in artifact.inspection and artifact.inspection["graph_nodes"] == len(artifact.graph["nodes"]) > 0
    assert "graph" in Artifact.objects.get(id=artifact.id).get_deferred_fields()
    assert client.get(f"/artifacts/{artifact.id}/graph/").status_code == 200
    client.patch(f"/api/v1/models/{artifact.model_id}/", {"labels": ["cat", "dog", "fox"]}, content_type="application/json")
    response = client.get(f"/api/v1/artifacts/{artifact.id}/download/")
    assert response.status_code == 200
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(bundle.namelist()) == ["SHA256SUMS", "metadata.json", "model.bin", "model.xml"]
    for line in bundle.read("SHA256SUMS").decode().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256(bundle.read(name)).hexdigest() == digest, name
    # weights as they are (deflate would cap the download at one core's ~40 MB/s), the text deflated
    assert bundle.getinfo("model.bin").compress_type == zipfile.ZIP_STORED
    assert bundle.getinfo("model.xml").compress_type == zipfile.ZIP_DEFLATED
    assert bundle.getinfo("model.xml").compress_size < bundle.getinfo("model.xml").file_size / 2
    bundle.extractall(tmp_path / "download")
    model = ov.Core().read_model(tmp_path / "download" / "model.xml")
    assert list(model.input(0).get_partial_shape().to_shape()) == [1, 3, 32, 32]
    metadata = json.loads(bundle.read("metadata.json"))
    assert metadata["labels"] == ["cat", "dog", "fox"] and metadata["lineage"][0]["origin"] == "uploaded"


def test_a_pickle_carrying_code_is_refused_and_runs_nothing(worker_host, alice, project, client, tmp_path):
    canary = tmp_path / "canary"
    for index, plain in enumerate([False, True]):
        artifact = register(client, alice, project, build.code_pickle(tmp_path / f"evil{index}.pth", canary, plain=plain), name=f"evil{index}")
        assert artifact.state == "failed"
        assert "code" in artifact.job.error, artifact.job.error
        assert not canary.exists()
        assert not default_storage.exists(artifact.storage_prefix)


def test_a_whole_pickled_module_is_refused_with_guidance(worker_host, alice, project, client, tmp_path):
    artifact = register(client, alice, project, build.whole_module_pickle(tmp_path / "model.pth"))
    assert artifact.state == "failed"
    assert "state_dict" in artifact.job.error and "TorchScript" in artifact.job.error


def test_onnx_external_data_outside_the_upload_is_refused(worker_host, alice, project, client, tmp_path):
    import onnx

    model = onnx.load(build.onnx_file(tmp_path / "tiny.onnx"))
    onnx.save_model(model, tmp_path / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    (tmp_path / "secret.bin").write_bytes((tmp_path / "weights.bin").read_bytes())
    hostile = onnx.load(tmp_path / "model.onnx", load_external_data=False)
    for tensor in hostile.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    (tmp_path / "pkg").mkdir()
    onnx.save_model(hostile, tmp_path / "pkg" / "model.onnx")
    with zipfile.ZipFile(tmp_path / "evil-onnx.zip", "w") as bundle:
        bundle.write(tmp_path / "pkg" / "model.onnx", "model.onnx")
        bundle.write(tmp_path / "weights.bin", "weights.bin")
    artifact = register(client, alice, project, tmp_path / "evil-onnx.zip")
    assert artifact.state == "failed" and "../secret.bin" in artifact.job.error, artifact.job.error


def test_ir_with_an_xml_entity_or_a_short_bin_is_refused(worker_host, alice, project, client, tmp_path):
    xml, bin_ = build.openvino_ir(tmp_path / "ir")
    text = xml.read_text()
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model.xml").write_text(text.replace("<?xml version=\"1.0\"?>", "<?xml version=\"1.0\"?>\n<!DOCTYPE net [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>", 1))
    (evil / "model.bin").write_bytes(bin_.read_bytes())
    entity = register(client, alice, project, evil / "model.xml", evil / "model.bin", name="entity")
    assert entity.state == "failed" and ("DOCTYPE" in entity.job.error or "entit" in entity.job.error), entity.job.error
    short = tmp_path / "short"
    short.mkdir()
    (short / "model.xml").write_text(text)
    (short / "model.bin").write_bytes(bin_.read_bytes()[:100])
    truncated = register(client, alice, project, short / "model.xml", short / "model.bin", name="short")
    assert truncated.state == "failed" and "model.bin" in truncated.job.error, truncated.job.error


def test_deleting_an_artifact_a_job_uses_is_refused(worker_host, alice, project, client, tmp_path):
    artifact = register(client, alice, project, build.onnx_file(tmp_path / "tiny.onnx"))
    user = Job.objects.create(project=project, kind="probe", queue="optimize", state=JobState.QUEUED)
    JobInput.objects.create(job=user, kind="artifact", artifact=artifact)
    response = client.delete(f"/api/v1/artifacts/{artifact.id}/")
    assert response.status_code == 400 and f"job #{user.id}" in str(response.json())
    assert client.delete(f"/api/v1/models/{artifact.model_id}/").status_code == 400
    Job.objects.filter(id=user.id).update(state=JobState.CANCELLED)
    assert client.delete(f"/api/v1/models/{artifact.model_id}/").status_code == 204
    assert not Artifact.objects.exists() and not default_storage.exists(artifact.storage_prefix)


def test_labels_and_preprocessing_are_validated(alice, project, client):
    from webapp.registry.models import Model

    model = Model.objects.create(project=project, name="m")
    bad = client.patch(f"/api/v1/models/{model.id}/", {"preprocessing": {"input_size": [0, 5], "layout": "CHW", "color": "RGB", "mean": [1, 2], "std": [0]}}, content_type="application/json")
    assert bad.status_code == 400
    errors = bad.json()
    assert {"preprocessing.input_size", "preprocessing.layout", "preprocessing.mean", "preprocessing.std"} <= set(errors)
    good = client.patch(f"/api/v1/models/{model.id}/", {"labels": ["a", "b"], "preprocessing": {"input_size": [96, 128], "layout": "NHWC", "color": "BGR", "value_range": "0-255", "mean": [0], "std": [255]}}, content_type="application/json")
    assert good.status_code == 200 and good.json()["preprocessing"]["input_size"] == [96, 128]


def test_nobody_sees_another_teams_models(worker_host, alice, charlie, team_c, project, client, tmp_path):
    artifact = register(client, alice, project, build.onnx_file(tmp_path / "tiny.onnx"))
    outsider = signed_in(charlie)
    for url in [f"/api/v1/models/{artifact.model_id}/", f"/api/v1/artifacts/{artifact.id}/", f"/api/v1/artifacts/{artifact.id}/download/",
                f"/api/v1/projects/{project.id}/models/", f"/models/{artifact.model_id}/", f"/artifacts/{artifact.id}/",
                f"/artifacts/{artifact.id}/download/"]:
        assert outsider.get(url).status_code == 404, url
    assert outsider.patch(f"/api/v1/models/{artifact.model_id}/", {"name": "mine"}, content_type="application/json").status_code == 404
    assert outsider.delete(f"/api/v1/artifacts/{artifact.id}/").status_code == 404


def test_a_file_whose_browser_checksum_differs_is_refused_before_any_job(alice, project, client, tmp_path):
    upload = uploaded(alice, project, build.onnx_file(tmp_path / "tiny.onnx"))
    response = client.post(f"/projects/{project.id}/models/new/", {"name": "tiny", "uploads": [str(upload.id)], "sha256": ["0" * 64]}, follow=True)
    assert "arrived damaged" in response.content.decode()
    assert not Artifact.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_a_download_storage_cannot_serve_is_refused_in_words_before_any_byte(team_a, alice):
    """A ready artifact whose files storage lost (a half-restored backup) is a 410 that says so, and
    one not ready a 409: neither a server error nor a truncated download."""
    from tests.helpers import make_artifact, make_model
    from webapp.projects.models import Project

    model = make_model(Project.objects.create(team=team_a, name="Vision", created_by=alice), alice)
    lost = make_artifact(model)  # rows only: nothing was ever stored under its prefix
    client = signed_in(alice)
    response = client.get(f"/api/v1/artifacts/{lost.id}/download/")
    assert response.status_code == 410 and "missing (model.xml, model.bin)" in response.json()["detail"]
    page = client.get(f"/artifacts/{lost.id}/download/")
    assert page.status_code == 410 and "restores them from a backup" in page.content.decode()
    unfinished = make_artifact(model)
    Artifact.objects.filter(id=unfinished.id).update(ready_at=None)
    response = client.get(f"/api/v1/artifacts/{unfinished.id}/download/")
    assert response.status_code == 409 and "not ready" in str(response.json())
    assert Artifact.objects.filter(model=model).count() == 2  # refusals change nothing
