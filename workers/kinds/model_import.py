"""The model import job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.model_import`)."""

from webapp.core.files import local_file
from webapp.registry.models import Artifact, Format
from webapp.registry.services import artifact_publish, model_input_from_artifact, model_take_inspection
from workers.jail import checked_tree
from workers.kinds.staging import published, staging
from workers.pipeline.reporting import JobError
from workers.runner import JobRun


def perform(run: JobRun) -> dict:
    """Check uploaded model files, inspect them (untrusted: all of it in the jail), publish."""
    artifact = Artifact.objects.select_related("model").get(id=run.params["artifact"])
    uploads = list(artifact.uploads.all())
    if not uploads or not all(upload.complete for upload in uploads):
        raise JobError("The uploaded files are gone; upload them again.")
    sources = [(local_file(upload.storage_key, staging(run, str(upload.id))), upload.filename) for upload in uploads]
    source = {"architecture": artifact.architecture, "num_classes": artifact.num_classes,
              "input_size": artifact.model.preprocessing["input_size"][0]}
    result = run.jailed(run.step, {"sources": [[str(path), name] for path, name in sources],
                                         "format": run.params["format"], "source": source},
                        reads=[path for path, _ in sources])
    run.reporter.stage("publishing")
    folder = published(run, "model")
    if result["format"] not in Format.values or result["primary"] not in checked_tree(folder):
        raise JobError("The model's inspection named a format or file it did not make, so nothing was published.")
    artifact_publish(artifact=artifact, folder=folder, fmt=result["format"], primary=result["primary"],
                     inspection=result["inspection"])
    artifact.refresh_from_db()
    if note := model_input_from_artifact(artifact=artifact):
        run.reporter.log(note[0], level=note[1])
    if warning := model_take_inspection(model=artifact.model, inspection=result["inspection"]):
        run.reporter.log(warning, level="warning")
    return {"artifact": artifact.id, "format": result["format"], "parameters": result["inspection"].get("parameters")}
