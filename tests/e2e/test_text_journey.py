"""The text journey, one browser test against the real daphne and worker: alice uploads a CSV of
sentences and a Hugging Face model folder (a zip), fine-tunes the model on the rows through the
train form and watches its curves grow while it runs, converts the result to OpenVINO IR with its
tokenizer, quantizes it to INT8, evaluates it, compares the variants, downloads the deploy zip and
runs its classify_text.py on a sentence: it prints a label and a score.

Screenshots (text-*) go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 to docs/screenshots/.
"""

import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import (artifact_link, by_testid, download, open_comparison, open_deploy_page, shot,
                               sign_in, succeeded)
from tests.jobs_helpers import make_project
from tests.text_builders import tiny_classifier_folder, topic_rows, write_rows
from webapp.registry.models import Artifact

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOPICS = ["food", "sport", "weather"]
JOB_URL = re.compile(r"/jobs/(\d+)/$")
DATASET_URL = re.compile(r"/datasets/(\d+)/$")
ARTIFACT_URL = re.compile(r"/artifacts/(\d+)/$")
PERCENT = re.compile(r"^\d+(\.\d+)? %$")


def model_zip(tmp_path: Path) -> Path:
    """A random tiny BERT's save_pretrained folder, zipped under its folder name as people zip one."""
    folder = tiny_classifier_folder(tmp_path / "topics-bert", TOPICS)
    with zipfile.ZipFile(tmp_path / "topics-bert.zip", "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"topics-bert/{file.name}")
    return tmp_path / "topics-bert.zip"


def test_alice_fine_tunes_converts_and_deploys_a_text_classifier(live_server_url, worker_host, page, alice, team_a,
                                                                  screenshots, tmp_path):
    base, started = live_server_url, time.monotonic()
    project = make_project(team_a, "Topic router")
    page.set_default_timeout(30_000)
    sign_in(page, base, "alice")

    # The dataset: a CSV of sentences, uploaded through the page and imported by the worker.
    page.goto(f"{base}/projects/{project.id}/datasets/new/")
    page.get_by_label("Archive or row file").set_input_files(write_rows(tmp_path / "topics.csv", topic_rows(120)))
    expect(page.get_by_label("Name")).to_have_value("topics")
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url(DATASET_URL)
    dataset_id = int(DATASET_URL.search(page.url).group(1))
    expect(by_testid(page, "dataset-state")).to_have_text("ready", timeout=90_000)
    expect(by_testid(page, "dataset-stored")).to_contain_text("120 rows · 3 classes")

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
    expect(by_testid(page, "text-model-facts")).to_contain_text("BertTokenizer")  # its tokenizer, no image preprocessing
    expect(page.get_by_role("heading", name="Preprocessing")).to_have_count(0)
    expect(by_testid(page, "equivalence-verdict")).to_contain_text("Matches its source")
    shot(page, screenshots, "text-convert-report")
    assert {"model.xml", "tokenizer/tokenizer.json"} <= {entry["name"] for entry in Artifact.objects.get(id=fp32).files}

    # INT8, post-training on a few rows of the train split: accuracy and macro-F1 before and after.
    form = by_testid(page, "quantize-form")
    expect(by_testid(page, "quantize-dataset")).to_have_value(str(dataset_id))
    expect(by_testid(page, "quantize-model-type")).to_have_value("transformer")
    by_testid(page, "quantize-method-ptq").check()
    form.get_by_label("Calibration rows").fill("16")
    by_testid(page, "quantize-submit").click()
    page.wait_for_url(JOB_URL)
    succeeded(page, 240_000)
    int8 = artifact_link(page)
    page.goto(f"{base}/artifacts/{int8}/")
    expect(by_testid(page, "artifact-precision")).to_have_text("int8")
    table = by_testid(page, "quantization-accuracy")
    expect(table).to_contain_text("rows")
    expect(table.locator("tbody tr")).not_to_have_count(0)
    for row in table.locator("tbody tr").all():
        expect(row.locator("[data-field=fp32]")).to_have_text(PERCENT)
        expect(row.locator("[data-field=int8]")).to_have_text(PERCENT)
    shot(page, screenshots, "text-quantized")

    # Evaluating the INT8 IR on the validation rows: accuracy, macro-F1, per class.
    by_testid(page, "evaluate-dataset").select_option(str(dataset_id))
    by_testid(page, "evaluate-submit").click()
    page.wait_for_url(JOB_URL)
    succeeded(page)
    page.goto(f"{base}/artifacts/{int8}/")
    by_testid(page, "performance-button").click()
    expect(by_testid(page, "eval-top1")).to_have_text(PERCENT)
    expect(by_testid(page, "eval-macro-f1")).to_have_text(re.compile(r"\d"))
    for topic in TOPICS:
        expect(by_testid(page, "per-class")).to_contain_text(topic)

    # Benchmarks of both IRs at 1 × 32 tokens, the least time a measurement may take.
    for artifact in (int8, fp32):
        page.goto(f"{base}/artifacts/{artifact}/")
        by_testid(page, "benchmark-batch").fill("1")
        by_testid(page, "benchmark-sequence-length").fill("32")
        by_testid(page, "benchmark-seconds").fill("1")
        by_testid(page, "benchmark-hint-throughput").uncheck()
        by_testid(page, "benchmark-layers").uncheck()
        if by_testid(page, "benchmark-torch").is_enabled():
            by_testid(page, "benchmark-torch").uncheck()
        by_testid(page, "benchmark-submit").click()
        page.wait_for_url(JOB_URL)
        succeeded(page, 240_000)

    # The comparison: both IRs with their latency, one best-for-latency pick within the drop allowed.
    model_id = Artifact.objects.get(id=int8).model_id
    open_comparison(page, base, model_id, 50, metric="macro_f1")  # a few dozen validation rows: coarse figures
    for artifact in (fp32, int8):
        row = page.locator(f"[data-testid=compare-row][data-artifact='{artifact}']")
        expect(row.locator("[data-field=latency]")).to_have_text(re.compile(r"^[\d.,]+ ms$"))
    expect(by_testid(page, "best-latency-badge")).to_have_count(1)
    shot(page, screenshots, "text-compare")

    # Deploying the INT8 IR: the zip, and its classify_text.py run on a sentence.
    open_deploy_page(page, base, int8)
    expect(by_testid(page, "install-line")).to_contain_text("tokenizers==")
    expect(by_testid(page, "run-line")).to_contain_text("python classify_text.py")
    shot(page, screenshots, "text-deploy")
    zipped = download(page, "deploy-download", tmp_path)
    folder = tmp_path / "deploy"
    zipfile.ZipFile(zipped).extractall(folder)
    assert (folder / "classify_text.py").read_text() == by_testid(page, "snippet").text_content()
    printed = subprocess.run([sys.executable, "classify_text.py", "the striker scored a late goal for the team"],
                             cwd=folder, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert re.fullmatch(r"(food|sport|weather)\t[01]\.\d{3}", lines[0]), printed.stdout
    assert sorted(line.split("\t")[0] for line in lines) == TOPICS, printed.stdout

    print(f"text journey took {time.monotonic() - started:.0f} s")
