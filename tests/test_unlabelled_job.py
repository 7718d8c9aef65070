"""Calibration without labels through the real worker: a flat archive of a team's own pictures
imports as an unlabelled dataset, and calibrates an INT8 IR of a model whose classes are nothing
the archive names; accuracy control on it is refused before a job exists."""

import numpy as np
import openvino as ov
import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage

from tests import model_builders as build
from tests.archive_builders import loose_photos, make_zip
from tests.helpers import signed_in, uploaded
from tests.jobs_helpers import make_project, wait_done
from webapp.datasets import services as datasets
from webapp.jobs.models import Job, JobState
from webapp.optimize import services as optimize
from webapp.registry.models import Artifact, Model
from workers.pipeline.feeding import InputSpec

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
FRUIT = ["apple", "banana", "cherry"]
SMALL = {"input_size": [32, 32], "layout": "NCHW", "color": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def test_a_flat_archive_calibrates_a_model_of_other_classes(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    archive = make_zip(tmp_path / "holiday.zip", loose_photos(24))
    dataset = datasets.dataset_create(project=project, user=alice, name="holiday", upload=uploaded(alice, project, archive))
    assert dataset.labelling == "auto"  # the archive decides
    assert wait_done(dataset.import_job_id, timeout=60).state == JobState.SUCCEEDED
    dataset.refresh_from_db()
    assert (dataset.labelling, dataset.labelled, dataset.classes, dataset.image_count) == ("unlabelled", False, [], 24)
    assert set(dataset.items.values_list("label", "split")) == {("", "train")}
    assert dataset.report["classes"] == [] and dataset.report["layout"] == "unlabelled"

    # a model of its own classes, as a team brings one (an OpenVINO IR and its labels)
    Model.objects.create(project=project, name="fruit", labels=FRUIT, preprocessing=SMALL, created_by=alice)
    response = signed_in(alice).post(f"/api/v1/projects/{project.id}/models/", {
        "name": "fruit", "uploads": [str(uploaded(alice, project, build.ir_zip(tmp_path / "fruit.zip")).id)]},
        content_type="application/json")
    assert response.status_code == 201, response.content
    assert wait_done(response.json()["job"], timeout=60).state == JobState.SUCCEEDED
    source = Artifact.objects.get(id=response.json()["id"])

    # accuracy control needs labels: refused, and no job is made
    jobs = Job.objects.count()
    with pytest.raises(ValidationError, match="unlabelled: usable for calibration only. Quantization with accuracy "
                                              "control needs labels"):
        optimize.artifact_quantize(artifact=source, user=alice, dataset=dataset, params={"method": "accuracy"})
    assert Job.objects.count() == jobs and source.children.count() == 0

    job = optimize.artifact_quantize(artifact=source, user=alice, dataset=dataset,
                                     params={"method": "ptq", "subset_size": 16})
    done = wait_done(job.id, timeout=180)
    assert done.state == JobState.SUCCEEDED, done.error_detail
    int8 = Artifact.objects.get(id=done.result["artifact"])
    assert (int8.parent_id, int8.origin, int8.format) == (source.id, "quantized", "openvino_ir")
    assert int8.precision in ("int8", "mixed")  # the tiny net's biases, kept in f32, are a fifth of its weights
    facts = int8.metrics["quantization"]
    assert (facts["fp32"], facts["int8"], facts["drop"]) == (None, None, None)  # nothing to score against
    assert facts["calibration_images"] == 16 and facts["quantized_layers"] > 0 and facts["dataset"] == dataset.id
    assert done.result["int8_top1"] is None
    stages = {event.data["stage"] for event in done.events.filter(kind="stage")}
    assert "quantizing" in stages and not {"measuring FP32", "measuring INT8"} & stages
    assert any("accuracy is not measured" in event.data["message"] for event in done.events.filter(kind="log"))

    # the INT8 IR runs on one of the pictures and gives the model's three scores
    model = ov.Core().read_model(default_storage.path(f"{int8.storage_prefix}/model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    picture = default_storage.path(f"{dataset.storage_prefix}/images/{dataset.items.first().path}")
    scores = ov.Core().compile_model(model, "CPU")(InputSpec.of(SMALL).load(picture))[0]
    assert scores.shape == (1, 3) and np.isfinite(scores).all()
    page = signed_in(alice).get(f"/artifacts/{int8.id}/").content.decode()
    assert "Calibrated on unlabelled images: accuracy was not measured" in page and "16 unlabelled images" in page
