"""Text datasets through the real worker: a zip of train/val files becomes a text dataset the API and
its page show as rows; text and images declared as the other fail in words, leaving nothing stored;
bad column names are refused on the form before any job."""

import pytest
from django.core.files.storage import default_storage

from tests.archive_builders import class_entries, make_zip
from tests.helpers import signed_in, uploaded
from tests.test_datasets import import_dataset
from tests.text_builders import topic_rows, write_rows
from webapp.core.modality import Modality
from webapp.core.quota import team_bytes_used
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobInput, JobState
from webapp.projects.models import Project
from webapp.uploads.models import Upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Words", created_by=alice)


def test_a_zip_of_train_and_val_files_becomes_a_text_dataset_with_its_report_and_page(worker_host, alice, project,
                                                                                       tmp_path):
    rows = [{"review": row["text"], "topic": row["label"]} for row in topic_rows(36)]
    rows[5]["review"] = ""  # line 7 of train.tsv: skipped, and named
    train = write_rows(tmp_path / "src" / "train.tsv", rows[:30])
    val = write_rows(tmp_path / "src" / "val.tsv", rows[30:])
    archive = make_zip(tmp_path / "topics.zip", [("train.tsv", train.read_bytes()), ("val.tsv", val.read_bytes())])
    client = signed_in(alice)
    dataset = import_dataset(client, project, uploaded(alice, project, archive), name="topics",
                             columns={"text": "review", "label": "topic"})
    assert dataset.state == "ready", dataset.import_job.error
    assert (dataset.modality, dataset.classes, dataset.image_count) == (Modality.TEXT, ["food", "sport", "weather"], 35)
    assert not dataset.items.exists() and default_storage.exists(f"{dataset.storage_prefix}/rows.jsonl")
    shown = client.get(f"/api/v1/datasets/{dataset.id}/").json()
    assert (shown["modality"], shown["row_count"], shown["image_count"]) == ("text", 35, 0)
    report = client.get(f"/api/v1/datasets/{dataset.id}/report/").json()
    assert report["split"]["source"] == "archive" and [row["val"] for row in report["classes"]] == [2, 2, 2]
    assert report["skipped"] == [{"file": "train.tsv", "line": 7, "reason": "empty text"}]
    job = Job.objects.get(id=dataset.import_job_id)
    assert job.result["rows"] == 35 and [e.data["stage"] for e in job.events.filter(kind="stage")] == [
        "unpacking", "validating", "publishing"]

    page = client.get(f"/datasets/{dataset.id}/").content.decode()
    assert 'data-testid="row-sample"' in page and 'data-testid="length-histogram"' in page
    assert "35 rows" in page and "Browse images" not in page and "train.tsv" in page and "empty text" in page
    assert rows[0]["review"] in page  # the sample shows rows, not thumbnails
    assert "a training or evaluation job on this dataset reports them" in page
    assert client.get(f"/datasets/{dataset.id}/gallery/").status_code == 404
    items = client.get(f"/api/v1/datasets/{dataset.id}/items/")
    assert items.status_code == 404 and "holds rows, not images" in items.json()["detail"]
    assert "35 rows" in client.get(f"/projects/{project.id}/").content.decode()

    # a job that tokenized the rows reports their token lengths (workers/pipeline/text/lengths.py)
    trained = Job.objects.create(project=project, kind="train", state=JobState.SUCCEEDED, result={"token_lengths": {
        "unit": "tokens", "model": "tiny-bert", "max_length": 8, "over": 4, "min": 6, "median": 7, "max": 9,
        "bins": [[6, 9, 35]]}})
    JobInput.objects.create(job=trained, kind="dataset", dataset=dataset)
    shown = client.get(f"/datasets/{dataset.id}/").content.decode()
    assert f"job #{trained.id}</a>'s tokenizer (tiny-bert): 6–9" in shown and "4 rows over its 8-token limit" in shown


@pytest.mark.parametrize("case", ["text declared as images", "images declared as text"])
def test_the_wrong_modality_fails_in_words_and_stores_nothing(case, worker_host, alice, project, tmp_path):
    if case == "text declared as images":
        upload, modality, words = write_rows(tmp_path / "rows.csv", topic_rows(12)), "images", "is a text file"
    else:
        upload, modality, words = make_zip(tmp_path / "pets.zip", class_entries(2)), "text", "holds images"
    sent = uploaded(alice, project, upload)
    used = team_bytes_used(project.team)
    dataset = import_dataset(signed_in(alice), project, sent, modality=modality)
    job = Job.objects.get(id=dataset.import_job_id)
    assert job.state == JobState.FAILED and words in job.error, job.error
    assert dataset.state == "failed" and dataset.image_count == 0 and not dataset.classes
    assert not default_storage.exists(dataset.storage_prefix) and not dataset.items.exists()
    assert team_bytes_used(project.team) == used  # only the kept upload, to retry or delete
    assert Upload.objects.filter(id=dataset.upload_id).exists()


def test_bad_text_options_are_refused_before_any_job(alice, project, tmp_path):
    upload = uploaded(alice, project, write_rows(tmp_path / "rows.csv", topic_rows(6)))
    client = signed_in(alice)
    for fields, words in [({"columns": {"text": "body", "label": "body"}}, "a different column"),
                          ({"columns": {"colour": "x"}}, "not a column role"),
                          ({"modality": "text", "labelling": "unlabelled"}, "needs a label column")]:
        response = client.post(f"/api/v1/projects/{project.id}/datasets/",
                               {"name": "rows", "upload": str(upload.id), **fields}, content_type="application/json")
        assert response.status_code == 400 and words in str(response.json()), response.content
    form = client.post(f"/projects/{project.id}/datasets/new/", {"name": "rows", "upload": str(upload.id),
                                                                  "column_text": "body", "column_label": "body"})
    assert form.status_code == 200 and "Give each column role a different column." in form.content.decode()
    assert not Dataset.objects.exists() and not Job.objects.exists()
    assert not Upload.objects.get(id=upload.id).claimed  # still free for a corrected request
