"""A training run whose worker is killed resumes from its last epoch's checkpoint on another
worker. Its own workers: no module worker may take the job."""

import signal

import pytest

from tests.jobs_helpers import events, make_project, wait_done
from tests.servers import start_worker, wait_for
from tests.test_train_job import colours_dataset, epoch_metric, start_training
from webapp.jobs.models import Job, JobState

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_run_whose_worker_dies_resumes_from_its_checkpoint_on_another(alice, team_a, tmp_path, child_env, log_dir):
    first = start_worker(child_env, log_dir, name="trainer-one")
    second = None
    try:
        project = make_project(team_a)
        dataset = colours_dataset(alice, project, tmp_path)
        job = start_training(alice, project, dataset, epochs=40)
        wait_for(lambda: (Job.objects.get(id=job.id).checkpoint or {}).get("epoch", 0) >= 2, timeout=180,
                 what="two epochs checkpointed")
        first.stop(signal.SIGKILL)
        second = start_worker(child_env, log_dir, name="trainer-two")
        done = wait_done(job.id, timeout=300)
        assert done.state == JobState.SUCCEEDED, done.error_detail
        assert done.attempts == 2 and done.worker_host.startswith("trainer-two@")
        assert any("resuming" in e.data["message"].lower() for e in events(job.id, "log"))
        assert len(epoch_metric(job.id, "epoch/train_loss")) >= 40  # every epoch once, the resumed ones again
    finally:
        first.stop(signal.SIGKILL)
        if second:
            second.stop()
