"""A text dataset as a person uploads it: a CSV with its own column names, from the upload page in a
real browser, imported by the real worker; the page then shows rows, not images."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import by_testid, shot, sign_in
from tests.jobs_helpers import make_project
from tests.text_builders import topic_rows, write_rows
from webapp.core.modality import Modality
from webapp.datasets.models import Dataset

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DATASET_URL = re.compile(r"/datasets/(\d+)/$")


def test_alice_uploads_a_csv_and_sees_its_rows(live_server_url, worker_host, page, alice, team_a, screenshots,
                                               tmp_path):
    project = make_project(team_a, "Support tickets")
    rows = [{"message": row["text"], "label": row["label"]} for row in topic_rows(45)]
    rows[3]["label"] = ""  # line 5: no label, skipped and named
    upload = write_rows(tmp_path / "tickets.csv", rows)
    sign_in(page, live_server_url, "alice")
    page.goto(f"{live_server_url}/projects/{project.id}/datasets/new/")
    expect(by_testid(page, "text-help")).to_contain_text("train.csv")
    page.get_by_label("Archive or row file").set_input_files(upload)
    expect(page.get_by_label("Name")).to_have_value("tickets")  # named after the file, less its suffix
    by_testid(page, "text-columns").get_by_label("text", exact=True).fill("message")
    page.get_by_role("button", name="Upload and import").click()

    page.wait_for_url(DATASET_URL)
    expect(by_testid(page, "dataset-state")).to_have_text("ready", timeout=60_000)  # the page follows the import
    dataset = Dataset.objects.get(id=int(DATASET_URL.search(page.url).group(1)))
    assert (dataset.modality, dataset.columns, dataset.image_count) == (Modality.TEXT, {"text": "message"}, 44)
    expect(by_testid(page, "dataset-stored")).to_contain_text("44 rows · 3 classes")
    expect(by_testid(page, "row-sample").locator("table[data-class=food] tbody tr")).to_have_count(5)
    expect(by_testid(page, "skipped")).to_contain_text("missing label")
    expect(page.get_by_role("link", name="Browse images")).to_have_count(0)
    shot(page, screenshots, "dataset-text")
