"""The text journey, one browser test against the real daphne and worker: alice uploads a CSV of
sentences and a Hugging Face model folder (a zip), fine-tunes the model on the rows through the
train form and watches its curves grow while it runs, converts the result to OpenVINO IR with its
tokenizer, quantizes it to INT8, evaluates it, compares the variants, downloads the deploy zip and
runs its classify_text.py on a sentence: it prints a label and a score.

Screenshots (text-*) go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 to docs/screenshots/.
"""

import re
import time
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import by_testid, shot, sign_in
from tests.jobs_helpers import make_project
from tests.text_builders import tiny_classifier_folder, topic_rows, write_rows
from webapp.registry.models import Artifact

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOPICS = ["food", "sport", "weather"]
JOB_URL = re.compile(r"/jobs/(\d+)/$")
DATASET_URL = re.compile(r"/datasets/(\d+)/$")
ARTIFACT_URL = re.compile(r"/artifacts/(\d+)/$")
ARTIFACT_LINK = re.compile(r"^artifact #(\d+)$")


def model_zip(tmp_path: Path) -> Path:
    """A random tiny BERT's save_pretrained folder, zipped under its folder name as people zip one."""
    folder = tiny_classifier_folder(tmp_path / "topics-bert", TOPICS)
    with zipfile.ZipFile(tmp_path / "topics-bert.zip", "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"topics-bert/{file.name}")
    return tmp_path / "topics-bert.zip"


def succeeded(page: Page, timeout: float = 180_000) -> None:
    state = by_testid(page, "job-state")
    expect(state).to_have_text(re.compile(r"^(succeeded|failed|cancelled)$"), timeout=timeout)
    if state.text_content().strip() != "succeeded":
        raise AssertionError(f"{page.url}: {state.text_content()}\n{page.locator('main').inner_text()[:3000]}")


def artifact_link(page: Page) -> int:
    output = by_testid(page, "job-output").get_by_role("link")
    expect(output).to_have_text(ARTIFACT_LINK)
    return int(ARTIFACT_LINK.match(output.inner_text().strip()).group(1))


def test_alice_fine_tunes_converts_and_deploys_a_text_classifier(live_server_url, worker_host, page, alice, team_a,
                                                                  screenshots, tmp_path):
    base, started = live_server_url, time.monotonic()
    project = make_project(team_a, "Topic router")
    page.set_default_timeout(30_000)
    sign_in(page, base, "alice")

    # The dataset: a CSV of sentences, uploaded through the page and imported by the worker.
    page.goto(f"{base}/projects/{project.id}/datasets/new/")
    page.get_by_label("Archive or row file").set_input_files(write_rows(tmp_path / "topics.csv", topic_rows(96)))
    expect(page.get_by_label("Name")).to_have_value("topics")
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url(DATASET_URL)
    dataset_id = int(DATASET_URL.search(page.url).group(1))
    expect(by_testid(page, "dataset-state")).to_have_text("ready", timeout=90_000)
    expect(by_testid(page, "dataset-stored")).to_contain_text("96 rows · 3 classes")

    # The model: a Hugging Face folder as a zip, inspected by the worker.
    page.goto(f"{base}/projects/{project.id}/")
    by_testid(page, "upload-model").click()
    page.get_by_label("Model file").set_input_files(model_zip(tmp_path))
    expect(page.get_by_label("Name", exact=True)).to_have_value("topics-bert")
    page.get_by_role("button", name="Upload and inspect").click()
    page.wait_for_url(ARTIFACT_URL)
    uploaded = int(ARTIFACT_URL.search(page.url).group(1))
    expect(by_testid(page, "artifact-state")).to_have_text("ready", timeout=90_000)
    expect(by_testid(page, "artifact-format")).to_have_text("Hugging Face transformers folder")

    # Fine-tuning the uploaded model on the rows through the form; the curves grow while it runs.
    page.goto(f"{base}/datasets/{dataset_id}/")
    by_testid(page, "train-on-dataset").click()
    form = by_testid(page, "train-form")
    expect(form.get_by_label("Dataset")).to_have_value(str(dataset_id))
    form.locator("[name=init_artifact]").select_option(str(uploaded))
    expect(form.locator("[name=pretrained]")).to_be_enabled()
    form.get_by_label("Model name").fill("topics")
    form.get_by_label("Epochs", exact=True).fill("2")
    form.get_by_label("Batch size", exact=True).fill("8")
    form.get_by_label("Learning rate").fill("0.002")
    form.locator("[name=max_length]").fill("32")
    shot(page, screenshots, "text-train-form")
    by_testid(page, "train-submit").click()
    page.wait_for_url(JOB_URL)
    # A step's loss drawn while the job page still says "running": live, not replayed at the end.
    page.wait_for_function(
        """() => Number(document.querySelector('[data-testid=chart-loss]').dataset.points) > 0
                 && document.querySelector('[data-testid=job-state]').textContent.trim() === 'running'""",
        polling=50, timeout=180_000)
    succeeded(page)
    expect(by_testid(page, "train-epoch")).to_have_text("2/2")
    expect(by_testid(page, "chart-accuracy")).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    shot(page, screenshots, "text-train-done")
    trained = artifact_link(page)
    assert Artifact.objects.get(id=trained).format == "transformers"

    # Conversion to OpenVINO IR, its equivalence checked on the dataset's rows; the tokenizer travels along.
    page.goto(f"{base}/artifacts/{trained}/")
    form = by_testid(page, "convert-form")
    expect(by_testid(page, "convert-text-options")).to_be_visible()
    form.get_by_label("Check equivalence on").select_option(str(dataset_id))
    by_testid(page, "convert-submit").click()
    page.wait_for_url(JOB_URL)
    succeeded(page)
    fp32 = artifact_link(page)
    page.goto(f"{base}/artifacts/{fp32}/")
    expect(by_testid(page, "artifact-format")).to_have_text("OpenVINO IR")
    expect(by_testid(page, "equivalence-verdict")).to_contain_text("Matches its source")
    shot(page, screenshots, "text-convert-report")
    assert {"model.xml", "tokenizer/tokenizer.json"} <= {entry["name"] for entry in Artifact.objects.get(id=fp32).files}

    print(f"text journey took {time.monotonic() - started:.0f} s")
