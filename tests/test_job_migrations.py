"""jobs 0003: Job.inputs JSON becomes JobInput rows and each job finds the model it trains or makes,
run by Django's migration executor on rows written while the JSON column still existed."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

# every app as it was then: a later column the old models do not know would refuse their rows
BEFORE = [("jobs", "0002_jobinput_job_model"), ("datasets", "0001_initial"), ("registry", "0001_initial")]


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection)  # a fresh loader sees what is applied now


@pytest.fixture
def old_apps():
    """The models as they were with Job.inputs; every app is brought back to its latest after."""
    executor = migrate(BEFORE)
    yield executor.loader.project_state(BEFORE).apps
    migrate(executor.loader.graph.leaf_nodes())


def test_it_moves_inputs_to_rows_and_finds_each_jobs_model(old_apps):
    Team, Project = old_apps.get_model("teams", "Team"), old_apps.get_model("projects", "Project")
    Dataset, Model = old_apps.get_model("datasets", "Dataset"), old_apps.get_model("registry", "Model")
    Artifact, OldJob = old_apps.get_model("registry", "Artifact"), old_apps.get_model("jobs", "Job")
    project = Project.objects.create(team=Team.objects.create(name="Team A"), name="Vision")
    dataset = Dataset.objects.create(project=project, name="colours", archive_name="c.zip", archive_sha256="0" * 64)
    colours, hues = Model.objects.create(project=project, name="colours"), Model.objects.create(project=project, name="hues")
    weights = Artifact.objects.create(model=colours, origin="trained")

    def job(kind, params, inputs):
        return OldJob.objects.create(project=project, kind=kind, queue="optimize", params=params, inputs=inputs)

    trained = job("train", {"model_name": " colours ", "dataset": dataset.id},
                  {"datasets": [dataset.id, 999_999, dataset.id], "artifacts": [str(weights.id), "x", True, None]})
    renamed = job("train", {"model_name": "old name"}, {"datasets": [dataset.id]})
    Artifact.objects.create(model=hues, origin="trained", job=renamed)  # what it made: hues, renamed since
    gone = job("train", {"model_name": "deleted since"}, {"datasets": [999_999]})
    converted = job("convert", {"artifact": weights.id}, {"artifacts": [weights.id], "datasets": []})
    measured = job("benchmark", {"artifact": weights.id}, {"artifacts": [weights.id]})
    probe = job("probe", {}, "anything a client sent")

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())  # through 0003, to today's models

    def reads(old) -> list[tuple]:
        return [(row.kind, row.dataset_id, row.artifact_id) for row in Job.objects.get(id=old.id).reads.all()]

    assert reads(trained) == [("dataset", dataset.id, None), ("artifact", None, weights.id)]
    assert reads(renamed) == [("dataset", dataset.id, None)] and reads(gone) == [] and reads(probe) == []
    assert reads(converted) == reads(measured) == [("artifact", None, weights.id)]
    models = dict(Job.objects.values_list("id", "model_id"))
    assert (models[trained.id], models[renamed.id], models[gone.id]) == (colours.id, hues.id, None)
    assert (models[converted.id], models[measured.id], models[probe.id]) == (colours.id, None, None)

    # and back: the rows become the JSON again
    back = migrate(BEFORE).loader.project_state(BEFORE).apps.get_model("jobs", "Job")
    assert back.objects.get(id=trained.id).inputs == {"datasets": [dataset.id], "artifacts": [weights.id]}
    assert back.objects.get(id=probe.id).inputs == {}
