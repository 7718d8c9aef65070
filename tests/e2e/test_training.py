"""Training as a person uses it: a real headless browser against daphne, the real Celery worker
importing a generated archive and then training on it (CPU, a small CNN on 16 px images), live
charts over the job's websocket.

Alice opens the training form from her project page, picks the dataset and the small CNN, sets
a short schedule and submits; on the job page the loss and accuracy curves grow while the run
goes on, come back whole after a reload mid-run, and the run ends with its best val top-1 and a
link to the trained artifact; the model's "Compare runs" page lists the run beside its curves.

Screenshots go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 to docs/screenshots/.
"""

import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.archive_builders import make_zip
from tests.e2e.helpers import api_headers, by_testid, shot, sign_in
from tests.helpers import uploaded
from tests.jobs_helpers import make_project, wait_done
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.registry.models import Artifact

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JOB_URL = re.compile(r"/jobs/(\d+)/$")
# Told apart by their dominant channel under heavy noise; 40 each, so that an epoch (12 steps of
# 8) takes about a second on two cores: long enough for the run to be watched and reloaded.
COLOURS = {"blue": 2, "green": 1, "red": 0}
PER_CLASS, SIZE = 40, 16


def colours_zip(folder):
    rng = np.random.default_rng(0)
    entries = []
    for label, channel in COLOURS.items():
        for index in range(PER_CLASS):
            pixels = rng.integers(0, 140, (SIZE, SIZE, 3))
            pixels[..., channel] += 110
            buffer = io.BytesIO()
            Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
            entries.append((f"colours/{label}/{index:02d}.png", buffer.getvalue()))
    return make_zip(folder / "colours.zip", entries)


def import_dataset(page: Page, base: str, alice, project, tmp_path) -> Dataset:
    """Through the API (via daphne) and the real worker, as a person's upload would be."""
    upload = uploaded(alice, project, colours_zip(tmp_path))
    response = page.request.post(f"{base}/api/v1/projects/{project.id}/datasets/", headers=api_headers(alice),
                                 data={"name": "colours", "upload": str(upload.id)})
    assert response.status == 201, response.text()
    dataset = Dataset.objects.get(id=response.json()["id"])
    assert wait_done(dataset.import_job_id, timeout=60).state == JobState.SUCCEEDED
    dataset.refresh_from_db()
    assert sorted(dataset.classes) == sorted(COLOURS) and dataset.image_count == PER_CLASS * len(COLOURS)
    return dataset


def points(page: Page, chart: str) -> int:
    return int(by_testid(page, f"chart-{chart}").get_attribute("data-points"))


def wait_points(page: Page, chart: str, more_than: int, timeout: float = 30_000) -> int:
    page.wait_for_function(
        "([chart, n]) => Number(document.querySelector(`[data-testid=chart-${chart}]`).dataset.points) > n",
        arg=[chart, more_than], timeout=timeout)
    return points(page, chart)


def test_alice_trains_a_small_cnn_and_watches_its_curves_live(
    live_server_url, worker_host, page, alice, team_a, screenshots, tmp_path
):
    base, project = live_server_url, make_project(team_a, "Colour sorter")
    dataset = import_dataset(page, base, alice, project, tmp_path)

    # The form, reached from the project page, or from the dataset's page with the dataset chosen.
    sign_in(page, base, "alice")
    page.goto(f"{base}/projects/{project.id}/")
    expect(by_testid(page, "train-model")).to_have_attribute("href", f"/projects/{project.id}/train/")
    page.goto(f"{base}/datasets/{dataset.id}/")
    by_testid(page, "train-on-dataset").click()
    form = by_testid(page, "train-form")
    expect(form.get_by_label("Dataset")).to_have_value(str(dataset.id))
    expect(form.get_by_label("Dataset")).to_contain_text(f"colours v1 · 3 classes · {3 * PER_CLASS} images")
    form.get_by_label("Model name").fill("colours")
    expect(form.locator("[name=pretrained]")).to_be_checked()
    expect(form.locator("[name=flip]")).not_to_be_checked()  # flips are a choice: wrong for digits and text
    expect(form.get_by_label("Augmentation")).not_to_contain_text("flip")
    form.get_by_label("Architecture").select_option("small_cnn")
    expect(form.locator("[name=pretrained]")).to_be_disabled()  # no weights exist for it: the form says so
    expect(by_testid(page, "train-pretrained-note")).to_have_text("small_cnn has no pretrained weights: it trains from scratch.")
    form.get_by_label("Architecture").select_option("resnet18")
    expect(form.locator("[name=pretrained]")).to_be_checked()
    expect(by_testid(page, "train-pretrained-note")).to_be_hidden()
    form.get_by_label("Architecture").select_option("small_cnn")
    expect(form.locator("[name=input_size]")).to_have_attribute("placeholder", "default 32")
    # The batch suggestion follows the architecture; this fleet's train worker has no GPU.
    expect(by_testid(page, "train-batch-sentence")).to_have_text(
        "No train worker has a GPU, so this trains on CPU: a batch of 32 keeps each step short; "
        "the learning rate stays at 0.003.")
    by_testid(page, "train-batch-use").click()
    expect(form.get_by_label("Batch size", exact=True)).to_have_value("32")
    expect(form.get_by_label("Learning rate")).to_have_value("0.003")
    expect(form.locator("[name=lr]")).to_have_attribute("placeholder", "default 0.003")
    expect(form.locator("[name=momentum]")).to_be_hidden()  # AdamW: no momentum
    form.get_by_label("Optimizer").select_option("sgd")
    expect(form.locator("[name=momentum]")).to_be_visible()
    form.get_by_label("Optimizer").select_option("adamw")
    expect(form.locator("[name=step_size]")).to_be_hidden()
    form.get_by_label("Learning-rate schedule").select_option("step")
    expect(form.locator("[name=gamma]")).to_be_visible()
    form.get_by_label("Learning-rate schedule").select_option("cosine")
    form.get_by_label("Epochs", exact=True).fill("6")
    form.get_by_label("Batch size", exact=True).fill("8")
    form.get_by_label("Input size (px)").fill("16")
    form.get_by_label("Data-loader workers").fill("0")
    expect(by_testid(page, "train-queue-note")).to_contain_text("GPU")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, screenshots, "train-form")

    # A setting the server refuses comes back as a message on its field, every value kept.
    form.get_by_label("Learning rate").fill("0")
    by_testid(page, "train-submit").click()
    expect(page.locator(".message.error")).to_contain_text("lr: Ensure this value is greater than or equal to")
    expect(form.get_by_label("Learning rate")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Epochs", exact=True)).to_have_value("6")
    expect(form.get_by_label("Input size (px)")).to_have_value("16")
    expect(form.get_by_label("Architecture")).to_have_value("small_cnn")
    expect(form.get_by_label("Dataset")).to_have_value(str(dataset.id))
    expect(form.get_by_label("Model name")).to_have_value("colours")
    assert not Job.objects.filter(kind="train").exists()
    form.get_by_label("Learning rate").fill("")
    by_testid(page, "train-submit").click()

    # The job page: the strip and the grouped charts, growing live.
    page.wait_for_url(JOB_URL)
    job_id = int(JOB_URL.search(page.url).group(1))
    job = Job.objects.get(id=job_id)
    assert job.kind == "train" and job.params["epochs"] == 6 and job.params["input_size"] == 16 and job.params["flip"] is False
    for chart in ("loss", "accuracy", "lr", "throughput", "time"):
        expect(by_testid(page, f"chart-{chart}").locator("canvas")).to_be_visible()
    expect(by_testid(page, "charts-card")).to_be_hidden()  # no metric is left for the generic charts
    loss = wait_points(page, "loss", 0)
    accuracy = wait_points(page, "accuracy", 0)  # the first epoch's points
    expect(by_testid(page, "train-device")).to_contain_text("cpu")
    expect(by_testid(page, "train-best")).to_contain_text("%")
    expect(by_testid(page, "train-epoch")).to_have_text(re.compile(r"^[1-6]/6"))
    assert Job.objects.get(id=job_id).state == JobState.RUNNING, Job.objects.get(id=job_id).error
    wait_points(page, "loss", loss)
    grown = wait_points(page, "accuracy", accuracy)  # a later epoch arrived while we watched
    assert grown > accuracy
    shot(page, screenshots, "train-live")

    # A reload mid-run draws the curves whole again from the stored events, then keeps following.
    before = {chart: points(page, chart) for chart in ("loss", "accuracy", "lr", "throughput")}
    still_running = Job.objects.get(id=job_id).state == JobState.RUNNING
    page.reload()
    for chart, count in before.items():
        page.wait_for_function(
            "([chart, n]) => Number(document.querySelector(`[data-testid=chart-${chart}]`).dataset.points) >= n",
            arg=[chart, count], timeout=15_000)
    expect(by_testid(page, "feed-status")).to_have_attribute("data-state", "live")

    # The end: succeeded, the best epoch's accuracy, the artifact.
    expect(by_testid(page, "job-state")).to_have_text("succeeded", timeout=90_000)
    job = Job.objects.get(id=job_id)
    artifact = Artifact.objects.get(id=job.result["artifact"])
    expect(by_testid(page, "train-epoch")).to_have_text("6/6")
    best = f"{100 * job.result['val_top1']:.1f} %"
    expect(by_testid(page, "train-best")).to_have_text(best)
    expect(by_testid(page, "train-best-epoch")).to_have_text(f"epoch {job.result['best_epoch']}")
    expect(by_testid(page, "train-eta")).to_have_text("—")
    assert job.result["val_top1"] > 0.5, job.result  # the colours are easy to tell apart
    # Every epoch is drawn: its three accuracies and two losses, besides the steps' losses.
    epochs = job.events.filter(kind="metric", data__name="epoch/val_top1").count()
    assert epochs == 6  # epoch points are never averaged together, however short the epochs
    assert points(page, "accuracy") == 3 * epochs
    assert points(page, "loss") >= 2 * epochs + 1
    assert points(page, "time") == 2 * epochs  # each epoch's wait for data and its compute
    expect(by_testid(page, "train-data-wait")).to_have_text(re.compile(r"^\d+\.\d %$"))
    expect(by_testid(page, "train-device-util-stat")).to_be_hidden()  # a CPU run has no GPU to be busy
    output = by_testid(page, "job-output").get_by_role("link")
    expect(output).to_have_text(f"artifact #{artifact.id}")
    assert still_running, "the run ended before the reload: the reload did not happen mid-run"

    # The model's runs, compared.
    page.goto(f"{base}/models/{artifact.model_id}/")
    by_testid(page, "compare-runs").click()
    row = by_testid(page, "run-row")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-job", str(job_id))
    expect(row.locator("[data-field=state]")).to_have_text("succeeded")
    expect(row).to_contain_text("small_cnn")
    expect(row.locator("[data-field=best]")).to_have_text(f"{100 * max_val_top1(job):.1f} %")
    expect(by_testid(page, "runs-chart-val-top1").locator("canvas")).to_be_visible()
    expect(by_testid(page, "runs-chart-val-top1")).to_have_attribute("data-points", str(epochs))
    expect(by_testid(page, "runs-chart-val-top1")).to_contain_text(f"#{job_id} · succeeded")
    shot(page, screenshots, "train-compare")


def max_val_top1(job: Job) -> float:
    return max(event.data["value"] for event in job.events.filter(kind="metric", data__name="epoch/val_top1"))
