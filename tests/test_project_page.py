"""The project page as data grows: jobs and models a page at a time, in a fixed number of queries."""

import pytest

from tests.helpers import signed_in
from tests.jobs_helpers import make_project
from webapp.jobs.models import Job, JobState
from webapp.registry.models import Artifact, Model

pytestmark = pytest.mark.django_db


def test_it_pages_jobs_and_models_in_a_fixed_number_of_queries(alice, team_a, django_assert_max_num_queries):
    project = make_project(team_a)
    Job.objects.bulk_create(Job(project=project, kind="probe", queue="optimize", state=JobState.SUCCEEDED) for _ in range(60))
    for index in range(30):
        model = Model.objects.create(project=project, name=f"net-{index:02d}")
        Artifact.objects.create(model=model, origin="uploaded", format="onnx", graph={"nodes": [{"id": "x"}] * 1000})
    client = signed_in(alice)
    with django_assert_max_num_queries(20):
        first = client.get(f"/projects/{project.id}/").content.decode()
    assert first.count('data-testid="model-row"') == 25 and first.count("<tr data-job=") == 50
    assert 'data-testid="job-count">60<' in first and "1–25 of 30" in first and "1–50 of 60" in first
    second = client.get(f"/projects/{project.id}/?jobs=2&models=2").content.decode()
    assert second.count('data-testid="model-row"') == 5 and second.count("<tr data-job=") == 10
    assert 'data-newest="false"' in second  # live rows are not added to a page of older jobs
    assert client.get(f"/projects/{project.id}/?jobs=²&models=-1").status_code == 200  # no page number: the first
