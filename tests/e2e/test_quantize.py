"""A person quantizes a trained model to INT8 in the browser and reads its accuracy before and
after: real daphne, real Celery worker, real NNCF and OpenVINO.

Alice has a small CNN trained on a colours dataset (through the API and the worker, as a run from
the training form would be). On its FP32 artifact's page she fills the "Quantize to INT8" form —
post-training, 20 calibration images — and submits; the job page follows the job to its end and
links the INT8 artifact, whose page shows FP32 and INT8 top-1 and top-5 side by side, as the job
measured them; the model page's artifact list shows the INT8 top-1 too.

A team with a model of its own classes and only a folder of its own pictures uploads them as a flat
archive: it imports as an unlabelled dataset, which the quantize form offers for plain post-training
quantization only, and which calibrates an INT8 IR whose page says no accuracy was measured.

Screenshots go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 to docs/screenshots/.
"""

import re

import numpy as np
import openvino as ov
import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from playwright.sync_api import Locator, Page, expect

from tests import model_builders as build
from tests.archive_builders import loose_photos, make_zip
from tests.e2e.helpers import api_headers, by_testid, shot, sign_in
from tests.e2e.test_training import import_dataset
from tests.helpers import uploaded
from tests.jobs_helpers import make_project, wait_done
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.optimize import services as optimize
from webapp.registry.models import Artifact, Model
from workers.pipeline.feeding import InputSpec

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JOB_URL = re.compile(r"/jobs/(\d+)/$")


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def trained_model(page: Page, base: str, alice, team, tmp_path) -> tuple[Dataset, Artifact]:
    """The colours dataset and a small CNN trained on it for two epochs, through the API (via
    daphne) and the real worker, as a run from the training form would be."""
    project = make_project(team, "Colour sorter")
    dataset = import_dataset(page, base, alice, project, tmp_path)
    response = page.request.post(f"{base}/api/v1/projects/{project.id}/train/", headers=api_headers(alice), data={
        "dataset": dataset.id, "model_name": "colours", "architecture": "small_cnn", "input_size": 32, "epochs": 2,
        "batch_size": 8, "workers": 0, "augment": "none"})
    assert response.status == 201, response.text()
    training = wait_done(response.json()["id"], timeout=180)
    assert training.state == JobState.SUCCEEDED, training.error_detail
    return dataset, Artifact.objects.get(id=training.result["artifact"])


def quantize_form(page: Page, base: str, alice, team, tmp_path) -> tuple[Dataset, Artifact, Locator]:
    """trained_model's dataset and FP32 artifact, and the "Quantize to INT8" form on the artifact's
    page, Alice signed in."""
    dataset, fp32 = trained_model(page, base, alice, team, tmp_path)
    sign_in(page, base, "alice")
    page.goto(f"{base}/artifacts/{fp32.id}/")
    return dataset, fp32, by_testid(page, "quantize-form")


def submitted_job(page: Page) -> Job:
    """The job the form's submit started, once the browser has gone on to its page."""
    page.wait_for_url(JOB_URL)
    return Job.objects.get(id=int(JOB_URL.search(page.url).group(1)))


def record_job_page(page: Page) -> None:
    """From the next page on: every stage and progress value the job page shows, in window.__seen."""
    page.add_init_script("""document.addEventListener("DOMContentLoaded", () => {
      const stage = document.querySelector("[data-testid=job-stage]");
      const bar = document.querySelector("[data-testid=job-progress]");
      if (!stage || !bar) return;
      window.__seen = [];
      new MutationObserver(() => window.__seen.push([stage.textContent, Number(bar.value)]))
        .observe(stage.closest("section"), {subtree: true, childList: true, attributes: true, characterData: true});
    });""")


def test_alice_quantizes_a_trained_model_and_reads_its_accuracy_before_and_after(
    live_server_url, worker_host, page, alice, team_a, screenshots, tmp_path
):
    base = live_server_url
    dataset, fp32, form = quantize_form(page, base, alice, team_a, tmp_path)

    # The form on the FP32 artifact's page: the fitting dataset chosen, each method's own settings.
    expect(form.get_by_label("Dataset")).to_have_value(str(dataset.id))
    expect(by_testid(page, "quantize-method-ptq")).to_be_checked()
    expect(by_testid(page, "quantize-fast-bias")).to_be_checked()
    expect(by_testid(page, "quantize-accuracy")).to_be_hidden()
    expect(by_testid(page, "quantize-qat")).to_be_hidden()
    form.get_by_label("Post-training with accuracy control").check()
    expect(by_testid(page, "quantize-max-drop")).to_be_visible()
    expect(by_testid(page, "quantize-qat")).to_be_hidden()
    form.get_by_label("Quantization-aware training").check()  # a state_dict: offered
    expect(by_testid(page, "quantize-epochs")).to_be_visible()
    expect(by_testid(page, "quantize-accuracy")).to_be_hidden()
    form.get_by_label("Post-training", exact=True).check()
    expect(by_testid(page, "quantize-qat")).to_be_hidden()
    form.get_by_label("Calibration images").fill("20")
    form.get_by_label("Preset").select_option("performance")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, screenshots, "quantize-form")
    record_job_page(page)
    by_testid(page, "quantize-submit").click()

    # The job page follows it live to its end, and links what it made.
    job = submitted_job(page)
    assert (job.kind, job.queue, job.params["method"], job.params["subset_size"]) == ("quantize", "optimize", "ptq", 20)
    assert job.params["fast_bias_correction"] is True and job.params["ignored_scope"] == []
    expect(by_testid(page, "feed-status")).to_have_attribute("data-state", "live")
    expect(by_testid(page, "job-state")).to_have_text("succeeded", timeout=240_000)
    expect(by_testid(page, "job-percent")).to_have_text("100%")
    expect(by_testid(page, "log")).to_contain_text("FP32 top-1")
    seen = page.evaluate("window.__seen")
    stages = {stage for stage, _ in seen}
    assert {"measuring FP32", "quantizing", "measuring INT8"} & stages and len(stages) >= 2, seen
    assert any(0 < progress < 1 for _, progress in seen), seen  # the bar moved while she watched
    expect(by_testid(page, "train-card")).to_be_hidden()  # post-training: nothing trains
    job.refresh_from_db()
    int8 = Artifact.objects.get(id=job.result["artifact"])
    output = by_testid(page, "job-output").get_by_role("link")
    expect(output).to_have_text(f"artifact #{int8.id}")
    output.click()

    # The INT8 artifact: precision, lineage, and the accuracy the job measured, before and after.
    page.wait_for_url(f"**/artifacts/{int8.id}/")
    facts = int8.metrics["quantization"]
    assert (int8.parent_id, int8.origin, int8.precision) == (fp32.id, "quantized", "int8")
    expect(by_testid(page, "artifact-precision")).to_have_text("int8")
    expect(by_testid(page, "artifact-format")).to_have_text("OpenVINO IR")
    report = by_testid(page, "quantization")
    expect(report).to_be_visible()
    expect(by_testid(page, "quantization-method")).to_contain_text("Post-training quantization")
    table = by_testid(page, "quantization-accuracy")
    expect(table).to_contain_text("FP32 (before)")
    expect(table).to_contain_text("INT8 (after)")
    top1, top5 = table.locator("tr[data-row=top-1]"), table.locator("tr[data-row=top-5]")
    expect(top1.locator("[data-field=fp32]")).to_have_text(percent(facts["fp32"]["top1"]))
    expect(top1.locator("[data-field=int8]")).to_have_text(percent(facts["int8"]["top1"]))
    expect(top5.locator("[data-field=fp32]")).to_have_text(percent(facts["fp32"]["top5"]))
    expect(top5.locator("[data-field=int8]")).to_have_text(percent(facts["int8"]["top5"]))
    change = round(-100 * facts["drop"], 1) or 0.0
    sign = "+" if change > 0 else "−" if change < 0 else ""
    expect(top1.locator("[data-field=change]")).to_have_text(f"{sign}{abs(change):.1f} points")
    expect(table).to_contain_text(f"Accuracy on {facts['int8']['images']} validation images of colours v1")
    expect(by_testid(page, "quantization-calibration")).to_contain_text(f"{facts['calibration_images']} images of the train split")
    expect(by_testid(page, "quantization-layers")).to_have_text(f"{facts['quantized_layers']} quantized")
    assert facts["quantized_layers"] > 0 and facts["calibration_images"] == 20
    expect(by_testid(page, "quantize-form")).to_have_count(0)  # INT8 already
    expect(by_testid(page, "artifact-lineage")).to_contain_text("quantized OpenVINO IR int8")
    shot(page, screenshots, "quantize-result")

    # The model page: the INT8 artifact's row says its top-1.
    page.goto(f"{base}/models/{fp32.model_id}/")
    expect(by_testid(page, "lineage-node")).to_have_count(2)
    row = page.locator(f"[data-testid=artifact-row][data-artifact='{int8.id}']")
    expect(row.locator("[data-field=int8-top1]")).to_have_text(f"· top-1 {percent(facts['int8']['top1'])} ({sign}{abs(change):.1f})")


def test_quantization_aware_training_shows_its_curves_on_the_job_page(
    live_server_url, worker_host, page, alice, team_a, screenshots, tmp_path
):
    base = live_server_url
    dataset, fp32, form = quantize_form(page, base, alice, team_a, tmp_path)
    form.get_by_label("Quantization-aware training").check()
    form.get_by_label("Calibration images").fill("20")
    form.get_by_label("Epochs").fill("2")
    form.get_by_label("Batch size").fill("8")
    by_testid(page, "quantize-submit").click()

    # The job page: training's strip and grouped charts, for a quantize job.
    job = submitted_job(page)
    assert (job.kind, job.queue, job.params["method"], job.params["epochs"]) == ("quantize", "train", "qat", 2)
    expect(by_testid(page, "train-card")).to_be_visible()
    expect(by_testid(page, "chart-accuracy").locator("canvas")).to_be_visible()
    expect(by_testid(page, "job-state")).to_have_text("succeeded", timeout=300_000)
    epochs = job.events.filter(kind="metric", data__name="epoch/val_top1").count()
    assert epochs == 2
    expect(by_testid(page, "chart-accuracy")).to_have_attribute("data-points", str(3 * epochs))
    expect(by_testid(page, "train-epoch")).to_have_text("2/2")
    job.refresh_from_db()
    training = Artifact.objects.get(id=job.result["artifact"]).metrics["training"]
    expect(by_testid(page, "train-best")).to_have_text(percent(training["final"]["val_top1"]))
    expect(by_testid(page, "train-best-epoch")).to_have_text(f"epoch {training['best_epoch']}")  # the run's choice
    expect(by_testid(page, "charts-card")).to_be_hidden()  # no metric left for the generic charts
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, screenshots, "quantize-qat-job")

    # A reload draws the curves whole again from the stored events.
    page.reload()
    expect(by_testid(page, "chart-accuracy")).to_have_attribute("data-points", str(3 * epochs))
    expect(by_testid(page, "train-best-epoch")).to_have_text(f"epoch {training['best_epoch']}")
    by_testid(page, "job-output").get_by_role("link").click()
    page.wait_for_url(f"**/artifacts/{job.result['artifact']}/")
    int8 = Artifact.objects.get(id=job.result["artifact"])
    facts = int8.metrics["quantization"]
    expect(by_testid(page, "quantization-method")).to_contain_text("Quantization-aware training")
    expect(by_testid(page, "quantization-training")).to_contain_text("2 epochs of quantization-aware training")
    expect(by_testid(page, "quantization-training").get_by_role("link")).to_have_attribute("href", f"/jobs/{job.id}/")
    top1 = by_testid(page, "quantization-accuracy").locator("tr[data-row=top-1]")
    expect(top1.locator("[data-field=fp32]")).to_have_text(percent(facts["fp32"]["top1"]))
    expect(top1.locator("[data-field=int8]")).to_have_text(percent(facts["int8"]["top1"]))
    assert dataset.id == facts["dataset"] and int8.precision == "int8"


def test_a_folder_of_unlabelled_pictures_calibrates_a_model_of_other_classes(
    live_server_url, worker_host, page, alice, team_a, screenshots, tmp_path
):
    base = live_server_url
    project = make_project(team_a, "Fruit")
    # A model of its own classes, brought from elsewhere (an IR, through the API and the worker).
    preprocessing = {"input_size": [32, 32], "layout": "NCHW", "color": "RGB", "mean": [0.5] * 3, "std": [0.25] * 3}
    Model.objects.create(project=project, name="fruit", labels=["apple", "banana", "cherry"], created_by=alice,
                         preprocessing=preprocessing)
    ir = uploaded(alice, project, build.ir_zip(tmp_path / "fruit.zip"))
    response = page.request.post(f"{base}/api/v1/projects/{project.id}/models/", headers=api_headers(alice),
                                 data={"name": "fruit", "uploads": [str(ir.id)]})
    assert response.status == 201, response.text()
    assert wait_done(response.json()["job"], timeout=60).state == JobState.SUCCEEDED
    source = Artifact.objects.get(id=response.json()["id"])

    # Her own pictures, loose in one folder, uploaded from the page: they import unlabelled.
    sign_in(page, base, "alice")
    page.goto(f"{base}/projects/{project.id}/datasets/new/")
    expect(page.get_by_label("Labels")).to_have_value("auto")
    page.get_by_label("Archive").set_input_files(make_zip(tmp_path / "holiday.zip", loose_photos(24)))
    page.get_by_role("button", name="Upload and import").click()
    expect(by_testid(page, "dataset-state")).to_have_text("ready", timeout=60_000)
    expect(by_testid(page, "dataset-unlabelled")).to_have_text("unlabelled: usable for calibration only")
    expect(by_testid(page, "class-chart")).to_have_count(0)
    expect(by_testid(page, "preview").locator("img")).to_have_count(12)
    page.wait_for_function("[...document.querySelectorAll('[data-testid=preview] img')].every(i => i.naturalWidth > 0)")
    shot(page, screenshots, "dataset-unlabelled")
    by_testid(page, "gallery-link").click()
    expect(by_testid(page, "gallery-item")).to_have_count(24)
    expect(by_testid(page, "gallery-unlabelled")).to_be_visible()
    dataset = Dataset.objects.get(project=project)
    assert (dataset.labelling, dataset.classes, dataset.image_count) == ("unlabelled", [], 24)
    assert set(dataset.items.values_list("label", "split")) == {("", "train")} and dataset.report["classes"] == []

    # Accuracy control needs labels: refused in words before a job exists, whatever the form shows.
    jobs = Job.objects.count()
    with pytest.raises(ValidationError, match="unlabelled: usable for calibration only. Quantization with accuracy "
                                              "control needs labels"):
        optimize.artifact_quantize(artifact=source, user=alice, dataset=dataset, params={"method": "accuracy"})
    assert Job.objects.count() == jobs and not source.children.exists()

    # The quantize form offers it for plain post-training quantization only.
    page.goto(f"{base}/artifacts/{source.id}/")
    form = by_testid(page, "quantize-form")
    option = form.locator(f"option[value='{dataset.id}']")
    expect(option).to_contain_text("unlabelled · 24 images · post-training only")
    expect(form.get_by_label("Dataset")).to_have_value(str(dataset.id))
    form.get_by_label("Post-training with accuracy control").check()
    expect(option).to_be_disabled()
    expect(form.get_by_label("Dataset")).to_have_value("")
    form.get_by_label("Post-training", exact=True).check()
    expect(option).to_be_enabled()
    form.get_by_label("Dataset").select_option(str(dataset.id))
    form.get_by_label("Calibration images").fill("16")
    by_testid(page, "quantize-submit").click()

    job = submitted_job(page)
    assert (job.params["method"], job.params["dataset"], job.params["subset_size"]) == ("ptq", dataset.id, 16)
    expect(by_testid(page, "job-state")).to_have_text("succeeded", timeout=180_000)
    expect(by_testid(page, "log")).to_contain_text("accuracy is not measured")
    job.refresh_from_db()
    assert not {"measuring FP32", "measuring INT8"} & {event.data["stage"] for event in job.events.filter(kind="stage")}
    int8 = Artifact.objects.get(id=job.result["artifact"])
    facts = int8.metrics["quantization"]
    assert (facts["fp32"], facts["int8"], facts["drop"], facts["calibration_images"]) == (None, None, None, 16)
    # The INT8 IR runs on one of her pictures and gives the model's three scores.
    model = ov.Core().read_model(default_storage.path(f"{int8.storage_prefix}/model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    picture = default_storage.path(f"{dataset.storage_prefix}/images/{dataset.items.first().path}")
    scores = ov.Core().compile_model(model, "CPU")(InputSpec.of(preprocessing).load(picture))[0]
    assert scores.shape == (1, 3) and np.isfinite(scores).all()
    by_testid(page, "job-output").get_by_role("link").click()
    page.wait_for_url(f"**/artifacts/{int8.id}/")
    assert (int8.parent_id, int8.origin, int8.format) == (source.id, "quantized", "openvino_ir")
    expect(by_testid(page, "quantization-unmeasured")).to_contain_text("accuracy was not measured")
    expect(by_testid(page, "quantization-accuracy")).to_have_count(0)
    expect(by_testid(page, "quantization-calibration")).to_contain_text("16 unlabelled images")
    expect(by_testid(page, "quantization-layers")).to_have_text(f"{facts['quantized_layers']} quantized")
    assert facts["quantized_layers"] > 0
    expect(by_testid(page, "evaluate-no-datasets")).to_contain_text("No ready labelled dataset")  # not hers
    shot(page, screenshots, "quantize-unlabelled-result")
