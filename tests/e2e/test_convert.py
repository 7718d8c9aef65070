"""A person converts an uploaded PyTorch model to OpenVINO IR in the browser and reads the
equivalence report: real daphne, real worker, real OpenVINO."""

import pytest
from playwright.sync_api import expect

from tests import model_builders as build
from tests.e2e.helpers import api_headers, by_testid, shot, sign_in
from tests.helpers import uploaded
from tests.jobs_helpers import make_project, wait_done
from webapp.jobs.models import JobState
from webapp.registry.models import Artifact, Model

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_alice_converts_a_torchscript_model_and_reads_the_equivalence_report(
    live_server_url, worker_host, page, alice, team_a, screenshots, tmp_path
):
    base, project = live_server_url, make_project(team_a, "Pet classifier")
    Model.objects.create(project=project, name="tiny", preprocessing={
        "input_size": [32, 32], "layout": "NCHW", "color": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    upload = uploaded(alice, project, build.torchscript(tmp_path / "tiny.pt"))
    response = page.request.post(f"{base}/api/v1/projects/{project.id}/models/", headers=api_headers(alice),
                                 data={"name": "tiny", "uploads": [str(upload.id)]})
    assert response.status == 201, response.text()
    assert wait_done(response.json()["job"]).state == JobState.SUCCEEDED
    source = Artifact.objects.get(id=response.json()["id"])

    sign_in(page, base, "alice")
    page.goto(f"{base}/artifacts/{source.id}/")
    form = by_testid(page, "convert-form")
    form.get_by_label("Input shape").select_option("dynamic_batch")
    form.get_by_label("Input name").fill("image")
    expect(form.get_by_label("Check inputs")).to_have_value("4")  # the job's default
    form.get_by_label("Check inputs").fill("6")
    shot(page, screenshots, "convert-form")
    by_testid(page, "convert-submit").click()

    expect(by_testid(page, "job-state")).to_have_text("succeeded", timeout=120_000)  # the job page, live
    output = by_testid(page, "job-output").get_by_role("link")
    expect(output).to_have_text("artifact #" + str(Artifact.objects.get(parent=source).id))
    output.click()
    expect(by_testid(page, "artifact-format")).to_have_text("OpenVINO IR")
    expect(by_testid(page, "equivalence-verdict")).to_contain_text("Matches its source")
    expect(by_testid(page, "top1-agreement")).to_have_text("100 %")
    expect(by_testid(page, "check-samples")).to_contain_text("6 · generated inputs")
    expect(by_testid(page, "conversion-route")).to_contain_text("direct")
    expect(by_testid(page, "inputs")).to_contain_text("image")
    expect(by_testid(page, "inputs")).to_contain_text("[?, 3, 32, 32]")
    ir = Artifact.objects.get(parent=source)
    assert float(by_testid(page, "max-abs-diff").inner_text()) == ir.metrics["conversion"]["equivalence"]["max_abs_diff"] <= 1e-4
    shot(page, screenshots, "convert-report")

    page.goto(f"{base}/models/{source.model_id}/")
    expect(by_testid(page, "lineage-node")).to_have_count(2)
