"""Models as a person uses them: a real headless browser against daphne, resumable (tus) uploads
from the page, the real Celery worker inspecting the files, live updates over the websockets.

Alice uploads a small TorchScript network she scripted, watches its inspection on the artifact
page (and on the project page, in another tab) until the inputs and outputs appear by
themselves, finds it in the model's lineage graph, edits the labels and preprocessing, and
downloads the file with the SHA-256 the page shows. An OpenVINO IR goes up as its .xml and .bin
and comes back as a zip that checks out and loads. A whole pickled model is refused in words,
without ever being unpickled. Charlie, in another team, gets 404s.

Screenshots go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 to docs/screenshots/.
"""

import hashlib
import re
import zipfile
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.e2e.helpers import (api_headers, assert_hidden_from, by_testid, cancel_job, download, hold_form_submit,
                               record_live_panel, seen_in_live_panel, shot, sign_in, start_long_probe)
from tests.jobs_helpers import make_project, wait_state
from webapp.jobs.models import JobState
from webapp.registry.models import Artifact, Model
from webapp.uploads.models import Upload

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ARTIFACT_URL = re.compile(r"/artifacts/(\d+)/$")
LABELS = ["cat", "dog", "fish"]


@pytest.fixture
def project(team_a):
    return make_project(team_a, "Pet classifier")


def tiny_net():
    """Three classes from any image size: a convolution, global pooling and a linear layer."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, len(LABELS)),
    ).eval()


def torchscript_file(folder: Path) -> Path:
    import torch

    path = folder / "tiny_net.pt"
    torch.jit.script(tiny_net()).save(str(path))
    return path


def openvino_ir(folder: Path) -> tuple[Path, Path]:
    import openvino
    import torch

    path = folder / "pets_ir.xml"
    converted = openvino.convert_model(tiny_net(), example_input=torch.zeros(1, 3, 32, 32), input=[1, 3, 32, 32])
    openvino.save_model(converted, str(path))
    return path, path.with_suffix(".bin")


class Canary:
    """Unpickling this opens (so creates) the file it names: code run by merely loading."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickled_model(folder: Path, canary: Path) -> Path:
    import torch

    path = folder / "whole_model.pt"
    torch.save({"model": Canary(canary), "epoch": 3}, path)  # what torch.save(model) makes: a pickle
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shape_text(shape) -> str:
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"


def upload_model(page: Page, files, *, name: str | None = None, hold: bool = False) -> dict | None:
    """Choose the files on the upload page (open already) and send; with hold, stop the form
    once the uploads are done and return what it would post."""
    page.get_by_label("Model file").set_input_files(files)
    if name is not None:
        page.get_by_label("Name", exact=True).fill(name)
    if hold:
        hold_form_submit(page)
    page.get_by_role("button", name="Upload and inspect").click()
    if not hold:
        return None
    page.wait_for_function("window.__held")
    form = page.evaluate("""() => {
      const data = new FormData(window.__held);
      return {uploads: data.getAll('uploads'), sha256: data.getAll('sha256'), name: data.get('name'),
              format: data.get('format'), labels: data.get('labels'), architecture: data.get('architecture')};
    }""")
    return form


def artifact_of(page: Page) -> Artifact:
    page.wait_for_url(ARTIFACT_URL)
    return Artifact.objects.select_related("model", "job").get(id=int(ARTIFACT_URL.search(page.url).group(1)))


def test_alice_uploads_torchscript_watches_the_inspection_edits_the_model_and_downloads_it(
    live_server_url, worker_host, page, alice, project, screenshots, tmp_path
):
    base = live_server_url
    model_file = torchscript_file(tmp_path)
    sign_in(page, base, "alice")
    probe_id = start_long_probe(page, base, alice, project)  # the inspection waits, to be seen waiting

    page.goto(f"{base}/projects/{project.id}/")
    expect(by_testid(page, "model-list")).to_have_count(0)
    page.get_by_role("link", name="Upload model").click()
    expect(page.get_by_role("heading", name="Upload a model")).to_be_visible()
    expect(page.get_by_label("Format")).to_have_value("")  # detect from the file
    # The architecture fields are for a state_dict only.
    architecture = by_testid(page, "state-dict-fields")
    expect(architecture).to_be_hidden()
    page.get_by_label("Format").select_option("state_dict")
    expect(architecture).to_be_visible()
    expect(page.get_by_label("Torchvision architecture")).to_contain_text("resnet18")
    page.get_by_label("Format").select_option("")
    expect(architecture).to_be_hidden()
    page.get_by_label("Class labels").fill("\n".join(LABELS))

    sent = upload_model(page, model_file, hold=True)
    expect(page.get_by_label("Name", exact=True)).to_have_value("tiny_net")  # named after the file
    row = by_testid(page, "file-progress")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("tiny_net.pt")
    expect(row.locator("[data-field=percent]")).to_have_text("100%")
    expect(row.locator("progress")).to_have_js_property("value", 1)
    expect(by_testid(page, "upload-error")).to_be_hidden()
    assert len(sent["uploads"]) == 1 and re.fullmatch(r"[0-9a-f-]{36}", sent["uploads"][0])
    assert sent["sha256"] == [sha256_of(model_file)]
    assert (sent["name"], sent["format"], sent["architecture"]) == ("tiny_net", "", None)  # no state_dict fields
    assert sent["labels"].split() == LABELS
    shot(page, screenshots, "model-upload")
    page.evaluate("window.__release()")

    # The artifact page while the inspection waits for the worker, then follows it live.
    artifact = artifact_of(page)
    upload = Upload.objects.get(id=sent["uploads"][0])
    assert upload.sha256 == sha256_of(model_file) and upload.claimed
    assert artifact.model.name == "tiny_net" and artifact.model.labels == LABELS
    assert artifact.source_names == ["tiny_net.pt"]
    expect(by_testid(page, "artifact-state")).to_have_text("inspecting")
    expect(by_testid(page, "feed-status")).to_have_attribute("data-state", "live")
    expect(by_testid(page, "inspect-stage")).to_have_text("waiting for a worker")
    expect(by_testid(page, "download")).to_have_count(0)
    shot(page, screenshots, "model-inspecting")
    record_live_panel(page, "inspect")

    # The project page, in a second tab, shows the model waiting on its inspection.
    other = page.context.new_page()
    other.goto(f"{base}/projects/{project.id}/")
    model_row = by_testid(other, "model-row")
    expect(model_row).to_have_count(1)
    expect(model_row).to_have_attribute("data-job", str(artifact.job_id))
    expect(model_row.locator("[data-field=state]")).to_have_text("inspecting")
    expect(by_testid(other, "feed-status")).to_have_attribute("data-state", "live")
    other.evaluate("window.__notReloaded = true")

    cancel_job(page, base, alice, probe_id)
    expect(by_testid(page, "artifact-state")).to_have_text("ready", timeout=90_000)
    expect(by_testid(page, "inputs")).to_be_visible()  # rendered by the server, after the reload
    assert page.evaluate("window.__notReloaded") is None  # reloaded itself for the result
    seen = seen_in_live_panel(page)
    assert re.search(r"stage:(checking|inspecting|publishing)\|", seen), seen
    assert re.search(r"progress:0\.[1-9]", seen), seen
    job = wait_state(artifact.job_id, JobState.SUCCEEDED, timeout=5)
    artifact.refresh_from_db()
    inspection = artifact.inspection
    assert artifact.format == "torchscript" and artifact.state == "ready"
    expect(by_testid(page, "artifact-format")).to_have_text("TorchScript")
    expect(by_testid(page, "inspect-panel")).to_have_count(0)
    expect(by_testid(page, "job-link")).to_have_text(f"#{job.id} Model inspection")
    for testid in ("inputs", "outputs"):
        rows = by_testid(page, testid).locator("tbody tr")
        expect(rows).to_have_count(len(inspection[testid]))
        for tensor, tr in zip(inspection[testid], rows.all()):
            expect(tr).to_contain_text(shape_text(tensor["shape"]))
    assert inspection["outputs"][0]["shape"][-1] == len(LABELS)
    expect(by_testid(page, "outputs")).to_contain_text(str(len(LABELS)) + "]")
    expect(by_testid(page, "artifact-sha256")).to_have_text(artifact.sha256)
    expect(by_testid(page, "artifact-files").locator("tbody tr")).to_have_count(len(artifact.files))
    if inspection.get("parameters"):
        expect(by_testid(page, "artifact-parameters")).to_have_text(str(inspection["parameters"]))
    shot(page, screenshots, "model-artifact")

    # Meanwhile the project tab caught up by itself: the badge, then the card from the server.
    expect(model_row.locator("[data-field=state]")).to_have_text("ready")
    expect(by_testid(other, "model-row")).to_contain_text("1 artifact · latest TorchScript")
    expect(by_testid(other, "model-row")).not_to_have_attribute("data-job", re.compile(".*"))
    assert other.evaluate("window.__notReloaded") is True
    other.close()

    # Downloaded, the file is the one whose SHA-256 the page shows.
    saved = download(page, "download", tmp_path / "downloads")
    assert sha256_of(saved) == artifact.sha256 == by_testid(page, "artifact-sha256").inner_text()
    assert saved.suffix == ".pt"

    # The model page: the lineage graph's node leads back to the artifact.
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="tiny_net").click()
    expect(by_testid(page, "model-name")).to_have_text("tiny_net")
    node = by_testid(page, "lineage").locator("[data-testid=lineage-node]")
    expect(node).to_have_count(1)
    expect(node).to_have_attribute("data-artifact", str(artifact.id))
    expect(node).to_contain_text("TorchScript")
    expect(node).to_contain_text("ready")
    row = by_testid(page, "artifact-row")
    expect(row).to_have_count(1)
    expect(row.locator("[data-field=state]")).to_have_text("ready")
    expect(row).to_contain_text("uploaded")
    shot(page, screenshots, "model-page")

    # Edit: the wrong number of labels is refused in words, the right one is saved.
    edit = by_testid(page, "model-edit")
    expect(edit.get_by_label("Class labels")).to_have_value("\n".join(LABELS) + "\n")
    edit.get_by_label("Class labels").fill("cat\ndog")
    edit.get_by_role("button", name="Save").click()
    expect(page.locator(".message.error")).to_contain_text("you gave 2 class names")
    assert Model.objects.get(id=artifact.model_id).labels == LABELS

    edit = by_testid(page, "model-edit")
    edit.get_by_label("Description").fill("Scripted in the test")
    edit.get_by_label("Class labels").fill("cat\ndog\nbird")
    edit.get_by_label("Input height").fill("32")
    edit.get_by_label("Input width").fill("48")
    edit.get_by_label("Color order").select_option("BGR")
    edit.get_by_label("Mean", exact=True).fill("0.5, 0.5, 0.5")
    edit.get_by_label("Std", exact=True).fill("0.25")
    # the whole recipe: how the image is fitted, cropped and resized, and the value range
    edit.locator("[name=fit]").select_option("stretch")
    edit.locator("[name=crop]").fill("0.9")
    edit.locator("[name=resize]").select_option("bicubic")
    edit.locator("[name=value_range]").select_option("0-255")
    edit.get_by_role("button", name="Save").click()
    expect(page.locator(".message").first).to_contain_text("Saved.")
    model = Model.objects.get(id=artifact.model_id)
    assert model.labels == ["cat", "dog", "bird"] and model.description == "Scripted in the test"
    assert model.preprocessing == {"input_size": [32, 48], "layout": "NCHW", "color": "BGR", "mean": [0.5, 0.5, 0.5],
                                   "std": [0.25, 0.25, 0.25], "fit": "stretch", "crop": 0.9, "resize": "bicubic",
                                   "value_range": "0-255"}
    expect(by_testid(page, "preprocessing-recipe").first).to_contain_text("centre 0.9 kept, stretched (bicubic) to 32×48")
    # mean in 0-255 units with the 0-1 range is refused in words, and nothing changes
    edit = by_testid(page, "model-edit")
    edit.locator("[name=value_range]").select_option("0-1")
    edit.get_by_label("Mean", exact=True).fill("123.7 116.3 103.5")
    edit.get_by_role("button", name="Save").click()
    expect(page.locator(".message.error")).to_contain_text("choose the value range 0–255")
    assert Model.objects.get(id=artifact.model_id).preprocessing == model.preprocessing
    edit = by_testid(page, "model-edit")
    expect(edit.get_by_label("Class labels")).to_have_value("cat\ndog\nbird\n")
    expect(edit.get_by_label("Input width")).to_have_value("48")
    expect(edit.get_by_label("Color order")).to_have_value("BGR")
    expect(edit.get_by_label("Mean", exact=True)).to_have_value("0.5 0.5 0.5")
    expect(by_testid(page, "model-description")).to_have_text("Scripted in the test")


def test_an_openvino_ir_goes_up_as_two_files_and_comes_back_as_a_checked_zip(
    live_server_url, worker_host, page, alice, project, screenshots, tmp_path
):
    import openvino

    xml, binary = openvino_ir(tmp_path)
    sign_in(page, live_server_url, "alice")
    page.goto(f"{live_server_url}/projects/{project.id}/models/new/")
    # One half of an IR is not enough: the page says so before sending anything.
    page.get_by_label("Model file").set_input_files(xml)
    expect(by_testid(page, "upload-error")).to_contain_text("choose its .xml and its .bin together")
    created = []
    page.on("request", lambda r: created.append(r.url) if r.method == "POST" and r.url.endswith("/api/v1/uploads/") else None)
    sent = upload_model(page, [xml, binary], name="Pets IR", hold=True)
    expect(by_testid(page, "file-progress")).to_have_count(2)
    assert sent["sha256"] == [sha256_of(xml), sha256_of(binary)]
    # The server refuses the form (a class count that is no number, slipped in here): the page
    # comes back with the finished uploads kept, and sending it again needs no second upload.
    page.evaluate("""() => {
      const input = Object.assign(document.createElement('input'), {type: 'hidden', name: 'num_classes', value: 'many'});
      window.__held.append(input);
      window.__release();
    }""")
    expect(page.locator(".message.error")).to_have_text(
        "num_classes: The class count is a whole number from 1 to 1000000.")
    expect(by_testid(page, "kept-upload")).to_have_text(
        "Already uploaded: pets_ir.xml and pets_ir.bin. Send the form again, or choose other files.")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Pets IR")
    page.get_by_role("button", name="Upload and inspect").click()

    artifact = artifact_of(page)
    assert len(created) == 2  # one tus upload per file, none again for the second send
    assert sorted(artifact.source_names) == ["pets_ir.bin", "pets_ir.xml"]
    expect(by_testid(page, "artifact-state")).to_have_text("ready", timeout=90_000)
    artifact.refresh_from_db()
    assert artifact.format == "openvino_ir"
    expect(by_testid(page, "artifact-format")).to_have_text("OpenVINO IR")
    expect(by_testid(page, "inputs")).to_contain_text("[1, 3, 32, 32]")
    expect(by_testid(page, "outputs")).to_contain_text(f"[1, {len(LABELS)}]")
    files = by_testid(page, "artifact-files").locator("tbody tr")
    expect(files).to_have_count(len(artifact.files))
    for entry in artifact.files:
        expect(by_testid(page, "artifact-files").locator(f'tr[data-file="{entry["name"]}"]')).to_contain_text(entry["sha256"])
    expect(by_testid(page, "download")).to_contain_text(".zip")

    saved = download(page, "download", tmp_path / "downloads")
    assert saved.suffix == ".zip"
    with zipfile.ZipFile(saved) as bundle:
        names = set(bundle.namelist())
        assert {"model.xml", "model.bin", "metadata.json", "SHA256SUMS"} <= names
        sums = dict(reversed(line.split("  ", 1)) for line in bundle.read("SHA256SUMS").decode().splitlines())
        assert set(sums) == names - {"SHA256SUMS"}
        for name, digest in sums.items():
            assert hashlib.sha256(bundle.read(name)).hexdigest() == digest, name
        assert sums["model.xml"] == next(e["sha256"] for e in artifact.files if e["name"] == "model.xml")
        bundle.extractall(tmp_path / "unzipped")
    loaded = openvino.Core().read_model(str(tmp_path / "unzipped" / "model.xml"))
    assert [list(port.get_partial_shape().to_shape()) for port in loaded.inputs] == [[1, 3, 32, 32]]
    assert list(loaded.outputs[0].get_partial_shape().to_shape()) == [1, len(LABELS)]


def test_a_whole_pickled_model_is_refused_in_words_and_never_unpickled(
    live_server_url, worker_host, page, alice, project, screenshots, tmp_path
):
    canary = tmp_path / "canary-was-unpickled"
    hostile = pickled_model(tmp_path, canary)
    sign_in(page, live_server_url, "alice")
    page.goto(f"{live_server_url}/projects/{project.id}/models/new/")
    upload_model(page, hostile)

    artifact = artifact_of(page)
    expect(by_testid(page, "artifact-state")).to_have_text("failed", timeout=90_000)
    job = wait_state(artifact.job_id, JobState.FAILED, timeout=5)
    error = by_testid(page, "artifact-error")
    expect(error).to_have_text(job.error)
    expect(error).to_have_attribute("role", "alert")
    assert re.search(r"pickle|run code|state_dict", job.error, re.I), job.error
    expect(by_testid(page, "download")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_be_visible()
    assert not canary.exists()
    shot(page, screenshots, "model-refused")


def ready_artifact(project, user) -> Artifact:
    """A published artifact, made directly: this test is about who may see it, not inspection."""
    payload = b"not really a model, but bytes to download"
    digest = hashlib.sha256(payload).hexdigest()
    model = Model.objects.create(project=project, name="grapes", created_by=user, labels=["red", "white"])
    artifact = Artifact.objects.create(
        model=model, origin="uploaded", format="torchscript", precision="fp32", source_names=["grapes.pt"],
        ready_at=timezone.now(), files=[{"name": "model.pt", "size": len(payload), "sha256": digest}],
        primary="model.pt", sha256=digest, size_bytes=len(payload), created_by=user,
        inspection={"format": "torchscript", "inputs": [{"name": "x", "shape": [None, 3, 224, 224], "dtype": "float32"}],
                    "outputs": [{"name": "y", "shape": [None, 2], "dtype": "float32"}], "parameters": 1234,
                    "precision": "fp32", "traces": True},
    )
    default_storage.save(f"{artifact.storage_prefix}/model.pt", ContentFile(payload))
    return artifact


def test_team_members_see_a_model_and_outsiders_get_404(
    live_server_url, page, alice, bob, charlie, project, team_c, screenshots
):
    base = live_server_url
    artifact = ready_artifact(project, alice)
    model = artifact.model
    pages = [f"/models/{model.id}/", f"/artifacts/{artifact.id}/", f"/artifacts/{artifact.id}/download/"]
    api = [f"/api/v1/models/{model.id}/", f"/api/v1/artifacts/{artifact.id}/", f"/api/v1/artifacts/{artifact.id}/download/"]

    sign_in(page, base, "bob")
    page.goto(f"{base}/projects/{project.id}/")
    row = by_testid(page, "model-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("grapes")
    expect(row).to_contain_text("1 artifact · latest TorchScript fp32")
    expect(row.locator("[data-field=state]")).to_have_text("ready")
    expect(page.get_by_role("link", name="Upload model")).to_be_visible()  # members may upload
    row.get_by_role("link").click()
    expect(by_testid(page, "model-name")).to_have_text("grapes")
    by_testid(page, "lineage-node").click()
    expect(by_testid(page, "artifact-state")).to_have_text("ready")
    expect(by_testid(page, "inputs")).to_contain_text("[?, 3, 224, 224]")  # a dynamic batch
    for path in pages:
        assert page.request.get(f"{base}{path}").status == 200, path
    for path in api:
        assert page.request.get(f"{base}{path}", headers=api_headers(bob)).status == 200, path

    assert_hidden_from(page, base, charlie, pages, api=api, name="grapes")


def test_alice_confirms_the_labels_read_from_a_models_file_and_then_corrects_them(
    live_server_url, page, alice, project, screenshots
):
    """The labels an ONNX model carries arrive unconfirmed (the worker's inspection hands them to
    the same service): the page names them and their source, Alice confirms them, then corrects them."""
    from webapp.registry.services import model_take_inspection

    model = Model.objects.create(project=project, name="colour reader", created_by=alice)
    outputs = [{"name": "features", "shape": [1, 8], "dtype": "f32"}, {"name": "prob", "shape": [1, 3, 1, 1], "dtype": "f32"}]
    Artifact.objects.create(model=model, origin="uploaded", format="onnx", precision="fp32", ready_at=timezone.now(),
                            files=[{"name": "model.onnx", "size": 1, "sha256": "0" * 64}], primary="model.onnx",
                            num_classes=3, inspection={"inputs": [{"name": "image", "shape": [1, 3, 16, 16], "dtype": "f32"}],
                                                       "outputs": outputs})
    model_take_inspection(model=model, inspection={"labels": ["red", "green", "blue"], "scores": "probabilities",
                                                   "labels_source": "the ONNX model's metadata", "scores_output": 1})
    sign_in(page, live_server_url, "alice")
    page.goto(f"{live_server_url}/models/{model.id}/")
    banner = by_testid(page, "labels-unconfirmed")
    expect(banner).to_contain_text("3 class names were read from the ONNX model's metadata")
    expect(banner).to_contain_text("red, green, blue")
    expect(by_testid(page, "edit-output")).to_have_value("1")  # the scores output, not the features
    expect(by_testid(page, "edit-scores")).to_have_value("probabilities")
    shot(page, screenshots, "model-labels-confirm")
    by_testid(page, "labels-confirm").click()
    expect(page.locator(".message").first).to_contain_text("Confirmed the 3 class labels.")
    expect(by_testid(page, "labels-unconfirmed")).to_have_count(0)
    model.refresh_from_db()
    assert (model.labels, model.labels_confirmed, model.output_index) == (["red", "green", "blue"], True, 1)

    edit = by_testid(page, "model-edit")
    edit.get_by_label("Class labels").fill("crimson\ngreen\nblue")
    by_testid(page, "edit-scores").select_option("logits")
    edit.get_by_role("button", name="Save").click()
    expect(page.locator(".message").first).to_contain_text("Saved.")
    model.refresh_from_db()
    assert (model.labels, model.labels_source, model.labels_confirmed, model.scores) == (
        ["crimson", "green", "blue"], "", True, "logits")
