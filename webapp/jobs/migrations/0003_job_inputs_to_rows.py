"""Job.inputs, JSON that the services wrote (and the generic endpoint let clients write), becomes
JobInput rows; each job gets the model it trained or made an artifact for. Ids that name nothing
any more, and values that are no ids, are skipped."""

from django.db import migrations

BATCH = 500
# Kinds whose new artifact joins the model of the artifact they read (an import: the one it inspects).
MAKES_FROM_ARTIFACT = ("model_import", "convert", "quantize")


def _ids(value) -> list[int]:
    """The ids in a list anyone may have written: whole numbers, or digits in a string; once each."""
    if not isinstance(value, list):
        return []
    ids = [item if isinstance(item, int) else int(item) for item in value
           if (isinstance(item, int) and not isinstance(item, bool)) or (isinstance(item, str) and item.isascii() and item.isdigit())]
    return list(dict.fromkeys(ids))


def _model_of(job, made: dict, artifacts: dict, models_by_name: dict) -> int | None:
    """The model a job trains or makes an artifact for: that of the artifact it made, if any (right
    even after a rename); else a training run's model by name, or the model of the artifact a
    conversion, quantization or import reads. Benchmarks and evaluations make none."""
    if job.id in made:
        return made[job.id]
    params = job.params if isinstance(job.params, dict) else {}
    if job.kind == "train":
        name = params.get("model_name")
        return models_by_name.get((job.project_id, name.strip())) if isinstance(name, str) else None
    if job.kind in MAKES_FROM_ARTIFACT:
        read = _ids([params.get("artifact")])
        return artifacts.get(read[0]) if read else None
    return None


def inputs_to_rows(apps, schema_editor):
    Job, JobInput = apps.get_model("jobs", "Job"), apps.get_model("jobs", "JobInput")
    Dataset, Artifact, Model = (apps.get_model("datasets", "Dataset"), apps.get_model("registry", "Artifact"),
                                apps.get_model("registry", "Model"))
    datasets = set(Dataset.objects.values_list("id", flat=True))
    artifacts = dict(Artifact.objects.values_list("id", "model_id"))
    made = dict(Artifact.objects.filter(job__isnull=False).order_by("id").values_list("job_id", "model_id"))
    models_by_name = {(project, name): id for id, project, name in Model.objects.values_list("id", "project_id", "name")}
    rows, jobs_of_model = [], {}
    for job in Job.objects.only("id", "project_id", "kind", "params", "inputs").order_by("id").iterator(chunk_size=BATCH):
        inputs = job.inputs if isinstance(job.inputs, dict) else {}
        rows += [JobInput(job_id=job.id, kind="dataset", dataset_id=id) for id in _ids(inputs.get("datasets")) if id in datasets]
        rows += [JobInput(job_id=job.id, kind="artifact", artifact_id=id) for id in _ids(inputs.get("artifacts")) if id in artifacts]
        if len(rows) >= BATCH:
            JobInput.objects.bulk_create(rows)
            rows = []
        model = _model_of(job, made, artifacts, models_by_name)
        if model is not None:
            jobs_of_model.setdefault(model, []).append(job.id)
    JobInput.objects.bulk_create(rows)
    for model, job_ids in jobs_of_model.items():
        for start in range(0, len(job_ids), BATCH):
            Job.objects.filter(id__in=job_ids[start:start + BATCH]).update(model_id=model)


def rows_to_inputs(apps, schema_editor):
    """Back: the rows as JSON again (those whose dataset or artifact was deleted since are left out).
    Job.model stays: the column goes with 0002, and forward sets it again."""
    Job, JobInput = apps.get_model("jobs", "Job"), apps.get_model("jobs", "JobInput")
    inputs = {}
    for job_id, dataset_id, artifact_id in JobInput.objects.order_by("job_id", "id").values_list("job_id", "dataset_id", "artifact_id"):
        entry = inputs.setdefault(job_id, {"datasets": [], "artifacts": []})
        if dataset_id is not None:
            entry["datasets"].append(dataset_id)
        if artifact_id is not None:
            entry["artifacts"].append(artifact_id)
    for job_id, value in inputs.items():
        Job.objects.filter(id=job_id).update(inputs=value)
    JobInput.objects.all().delete()  # forward again makes them anew


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0002_jobinput_job_model'),
    ]

    operations = [
        migrations.RunPython(inputs_to_rows, rows_to_inputs),
    ]
