"""schemathesis against the live server's own OpenAPI schema, as a team owner with a token: every
operation, bounded examples, the stateful phase's inferred links; any server error (5xx) fails.

Path ids are the rows made here (a team, its project, a dataset, a model, artifacts, a job, an
upload), so requests reach the code behind the 404s. Deletes run last, in a second pass, so that
the first pass still finds what they remove. The run's rate limits are high (tests/plugin.py)."""

import subprocess
import sys

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from tests.helpers import make_artifact, make_dataset, make_model, uploaded
from webapp.core.tokens import token_issue
from webapp.jobs.models import Job, JobState
from webapp.projects.models import Project
from webapp.registry.models import Origin
from webapp.teams.models import Membership

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Revoking the token this run signs in with would turn the rest into 401s (tests/test_api.py tests it).
OWN_TOKEN = "DELETE /api/v1/auth/token/"


def seeded_ids(alice, team_a, tmp_path) -> dict[str, object]:
    project = Project.objects.create(team=team_a, name="Vision", created_by=alice)
    dataset = make_dataset(project)
    source = make_artifact(make_model(project, alice), fmt="state_dict", origin=Origin.TRAINED)
    ir = make_artifact(source.model, parent=source)
    for entry in ir.files:  # its files, so that its download has something to send
        default_storage.save(f"{ir.storage_prefix}/{entry['name']}", ContentFile(b"\0" * entry["size"]))
    job = Job.objects.create(project=project, kind="probe", created_by=alice, queue="optimize", state=JobState.SUCCEEDED)
    archive = tmp_path / "data.bin"
    archive.write_bytes(b"\0" * 64)
    spare, _ = token_issue(user=alice, name="spare")
    return {"team_id": team_a.id, "project_id": project.id, "dataset_id": dataset.id, "model_id": source.model_id,
            "artifact_id": ir.id, "job_id": job.id, "upload_id": str(uploaded(alice, project, archive).id),
            "membership_id": Membership.objects.get(team=team_a, user__username="bob").id, "token_id": spare.id}


def config_file(path, ids: dict[str, object]):
    lines = ["[parameters]"] + [f'"path.{name}" = {value!r}'.replace("'", '"') for name, value in ids.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def schemathesis(url: str, key: str, config, *args: str, seconds: int) -> subprocess.CompletedProcess:
    """The `st run` command line; it keeps its cache (.schemathesis/) in the config's folder. One
    worker: with two, hypothesis' ast.parse in two threads trips CPython 3.11's "AST constructor
    recursion depth mismatch" now and then, an error of the run itself."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(config), "run", f"{url}/api/schema/",
        "--header", f"Authorization: Token {key}", "--checks", "not_a_server_error", "--max-examples", "8",
        "--max-time", str(seconds), "--seed", "22", "--workers", "1", "--request-timeout", "20", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, cwd=config.parent)


def test_the_api_answers_no_input_with_a_server_error(live_server_url, alice, team_a, tmp_path):
    _, key = token_issue(user=alice, name="schemathesis")
    config = config_file(tmp_path / "schemathesis.toml", seeded_ids(alice, team_a, tmp_path))
    everything = schemathesis(live_server_url, key, config, "--exclude-method", "DELETE", seconds=55)
    assert everything.returncode == 0, everything.stdout[-20000:] + everything.stderr[-5000:]
    deletes = schemathesis(live_server_url, key, config, "--include-method", "DELETE", "--exclude-name", OWN_TOKEN,
                           seconds=15)
    assert deletes.returncode == 0, deletes.stdout[-20000:] + deletes.stderr[-5000:]
