"""The training form with a text dataset, in a real browser: it offers the text settings (max
sequence length, a text model to fine-tune or a built-in BERT shape) and hides the image ones, and
the other way round when an image dataset is chosen; a text run is submitted with them. The run
itself is tests/test_text_train_job.py's."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.e2e.helpers import by_testid, sign_in
from tests.helpers import make_artifact, make_dataset
from tests.jobs_helpers import make_project
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job
from webapp.registry.models import Model

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JOB_URL = re.compile(r"/jobs/(\d+)/$")


def test_the_form_offers_the_settings_of_the_datasets_kind(live_server_url, page, alice, team_a):
    base, project = live_server_url, make_project(team_a, "Support tickets")
    images = make_dataset(project)
    text = Dataset.objects.create(project=project, name="tickets", modality="text", archive_name="tickets.csv",
                                  archive_sha256="0" * 64, imported_at=timezone.now(), classes=["bug", "billing"],
                                  image_count=40)
    bert = make_artifact(Model.objects.create(project=project, name="tiny-bert", modality="text",
                                              labels=["bug", "billing"], created_by=alice), fmt="transformers")
    state_dict = make_artifact(Model.objects.create(project=project, name="colours", created_by=alice),
                               fmt="state_dict")

    sign_in(page, base, "alice")
    page.goto(f"{base}/projects/{project.id}/train/?dataset={text.id}")
    form = by_testid(page, "train-form")
    expect(form.get_by_label("Dataset")).to_contain_text("tickets v1 · 2 classes · 40 rows")
    expect(form.get_by_label("Architecture")).to_have_value("bert-mini")
    expect(form.locator("[name=max_length]")).to_be_visible()
    for image_only in ("optimizer", "schedule", "augment", "input_size", "workers", "flip"):
        expect(form.locator(f"[name={image_only}]")).to_be_hidden()
    expect(form.locator("option[value=resnet18]")).to_be_disabled()
    expect(form.locator(f"[name=init_artifact] option[value='{state_dict.id}']")).to_be_disabled()
    expect(form.locator("[name=pretrained]")).to_be_disabled()  # from scratch: no weights to choose
    expect(by_testid(page, "train-pretrained-note")).to_have_text("bert-mini trains from scratch with random weights.")
    expect(form.locator("[name=lr]")).to_have_attribute("placeholder", "default 5e-4")
    form.locator("[name=init_artifact]").select_option(str(bert.id))
    expect(form.locator("[name=pretrained]")).to_be_enabled()
    expect(form.locator("[name=lr]")).to_have_attribute("placeholder", "default 5e-5")  # fine-tuning weights

    # an image dataset: the image settings, and no text model to fine-tune
    form.get_by_label("Dataset").select_option(str(images.id))
    expect(form.get_by_label("Architecture")).to_have_value("resnet18")
    expect(form.locator("[name=optimizer]")).to_be_visible()
    expect(form.locator("[name=max_length]")).to_be_hidden()
    expect(form.locator("[name=init_artifact]")).to_have_value("")
    expect(form.locator(f"[name=init_artifact] option[value='{bert.id}']")).to_be_disabled()

    form.get_by_label("Dataset").select_option(str(text.id))
    form.locator("[name=init_artifact]").select_option(str(bert.id))
    form.get_by_label("Model name").fill("tickets")
    form.get_by_label("Epochs", exact=True).fill("2")
    form.locator("[name=max_length]").fill("64")
    by_testid(page, "train-submit").click()
    page.wait_for_url(JOB_URL)
    job = Job.objects.get(id=int(JOB_URL.search(page.url).group(1)))
    assert (job.kind, job.params["dataset"], job.params["init_artifact"]) == ("train", text.id, bert.id)
    assert (job.params["max_length"], job.params["epochs"], job.params["pretrained"]) == (64, 2, True)
    assert job.params["optimizer"] == "adamw" and job.model.modality == "text"
