"""The model import job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.model_import`)."""

from webapp.core.files import local_file
from webapp.core.modality import Modality
from webapp.registry.models import Artifact, Format, Model
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
    modality = _modality(artifact, result["inspection"])
    artifact_publish(artifact=artifact, folder=folder, fmt=result["format"], primary=result["primary"],
                     inspection=result["inspection"])
    artifact.refresh_from_db()
    if artifact.model.modality != modality:
        Model.objects.filter(id=artifact.model_id).update(modality=modality)
        artifact.model.modality = modality
    if modality == Modality.TEXT:
        run.reporter.log("A text model: it reads token ids from its tokenizer; pair it with text datasets.")
    if modality == Modality.IMAGES and (note := model_input_from_artifact(artifact=artifact)):
        run.reporter.log(note[0], level=note[1])
    if warning := model_take_inspection(model=artifact.model, inspection=result["inspection"]):
        run.reporter.log(warning, level="warning")
    return {"artifact": artifact.id, "format": result["format"], "parameters": result["inspection"].get("parameters")}


def _modality(artifact: Artifact, inspection: dict) -> str:
    """What the upload reads (images or text); refused, before anything is published, where the
    model already has artifacts of the other kind: one model reads one kind of input."""
    modality = Modality.TEXT if inspection.get("modality") == Modality.TEXT else Modality.IMAGES
    others = artifact.model.artifacts.exclude(id=artifact.id).exclude(ready_at=None)
    if artifact.model.modality != modality and others.exists():
        said = {Modality.TEXT: "reads text", Modality.IMAGES: "reads images"}
        raise JobError(f"Model “{artifact.model}” {said[artifact.model.modality]}, and this upload "
                       f"{said[modality]}; upload it under another model name.")
    return modality
