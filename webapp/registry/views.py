from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseGone
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.access import Action, authorize, role_allows
from webapp.datasets.selectors import chosen_dataset, ready_datasets_of_project
from webapp.core.throttles import throttled_page
from webapp.jobs.kinds import KINDS, submission_key
from webapp.hosts.selectors import most_training_gpus, smallest_train_gpu
from webapp.jobs.selectors import runs_series
from workers.pipeline.architectures import PRETRAINED, TRAINABLE, defaults_for
from webapp.projects.selectors import project_for_user
from webapp.registry import services
from webapp.core.modality import Modality
from webapp.registry.models import Artifact, Format, Model, Scores
from webapp.core.views import form_errors
from webapp.optimize.quantization import quantization_figures
from webapp.optimize.views import artifact_panels
from webapp.registry.selectors import (
    artifact_for_user, artifacts_of_model, chosen_init_artifact, lineage, model_for_user, training_runs_of_model,
)
from webapp.uploads.models import Upload
from workers.pipeline import batchsize
from workers.pipeline import preprocessing as recipe
from workers.pipeline.architectures import ARCHITECTURES
from workers.pipeline.text.configs import DEFAULT_WEIGHT_DECAY, FINE_TUNE_LR, SCRATCH_LR, TEXT_ARCHITECTURES

# A text run's empty fields: the rate from random weights, and fine-tuning's (the script picks).
TEXT_DEFAULTS = {"lr": SCRATCH_LR, "weight_decay": DEFAULT_WEIGHT_DECAY, "fine_tune_lr": FINE_TUNE_LR}


@login_required
@require_http_methods(["GET", "POST"])
@throttled_page("jobs")
def model_new(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the upload page. POST: its form, sent by the page's script once the tus uploads are done."""
    project = project_for_user(request.user, project_id, Action.WRITE)
    if request.method == "POST":
        ids = [value for value in request.POST.getlist("uploads") if value]
        try:
            uploads = list(Upload.objects.filter(id__in=ids, created_by=request.user))
            if not uploads or len(uploads) != len(set(ids)):
                raise ValidationError({"uploads": "Choose the model's files and wait for them to upload."})
            artifact = services.model_upload(
                project=project,
                user=request.user,
                name=request.POST.get("name", ""),
                uploads=uploads,
                declared_format=request.POST.get("format", ""),
                architecture=request.POST.get("architecture", ""),
                num_classes=request.POST.get("num_classes", "").strip(),
                labels=request.POST.get("labels", ""),
                sha256s=dict(zip(request.POST.getlist("uploads"), request.POST.getlist("sha256"))),
                idempotency_key=submission_key(request),
            )
        except ValidationError as error:
            form_errors(request, error)
        else:
            return redirect("artifact_detail", artifact_id=artifact.id)
    context = {"project": project, "team": project.team, "formats": Format.choices, "architectures": ARCHITECTURES}
    return render(request, "registry/model_new.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@throttled_page("jobs")
def model_train(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the training form, with each architecture's defaults. POST: start the run."""
    project = project_for_user(request.user, project_id, Action.WRITE)
    fields = KINDS["train"].serializer().fields
    if request.method == "POST":
        params = {name: value for name, value in request.POST.items() if name in fields and value != ""}
        for flag in ("amp", "pretrained", "keep_best_on_cancel", "flip"):
            params[flag] = flag in request.POST
        try:
            dataset = chosen_dataset(request.user, params)
            init = chosen_init_artifact(request.user, params)
            job = services.model_train(project=project, user=request.user, dataset=dataset, params=params, init=init,
                                       idempotency_key=submission_key(request))
        except ValidationError as error:
            form_errors(request, error)
        else:
            return redirect("job_detail", job_id=job.id)
    context = {
        "project": project,
        "team": project.team,
        "fields": fields,
        "datasets": ready_datasets_of_project(project.id, labelled_only=True),
        "init_artifacts": Artifact.objects.filter(model__project=project, ready_at__isnull=False,
                                                  format__in=["state_dict", "torchscript", "transformers"]
                                                  ).select_related("model"),
        "defaults": {**{arch: {opt: defaults_for(arch, opt) for opt in ("adamw", "sgd")} for arch in TRAINABLE},
                     **{arch: TEXT_DEFAULTS for arch in TEXT_ARCHITECTURES}},
        "text_architectures": list(TEXT_ARCHITECTURES),
        "pretrained_architectures": PRETRAINED,
        "most_gpus": most_training_gpus(),
        "selected": request.POST if request.method == "POST" else request.GET,
        **_batch_fit(request.POST if request.method == "POST" else request.GET),
    }
    return render(request, "registry/model_train.html", context)


def _batch_fit(selected) -> dict:
    """The batch suggestion for the form's architecture, input size and optimizer on the smallest
    GPU of the train workers, and what the page's script needs to redo it as they change."""
    gpu = smallest_train_gpu()
    architecture = selected.get("architecture") if selected.get("architecture") in TRAINABLE else "resnet18"
    optimizer = "sgd" if selected.get("optimizer") == "sgd" else "adamw"
    size = selected.get("input_size", "")
    size = int(size) if size.isdigit() and 8 <= int(size) <= 1024 else defaults_for(architecture)["input_size"]
    memory, name = (gpu["memory_bytes"], f"{gpu['name']} ({gpu['host']})") if gpu else (None, "")
    fit = {"gpu": gpu and {"memory": memory, "name": name},
           "constants": {"share": batchsize.MEMORY_SHARE, "overhead": batchsize.OVERHEAD_BYTES,
                         "max": batchsize.MAX_BATCH, "cpu": batchsize.CPU_BATCH},
           "architectures": {arch: {"per_pixel": batchsize.per_image_bytes(arch, 1),
                                    "fixed": {opt: batchsize.fixed_bytes(arch, opt) for opt in ("adamw", "sgd")}}
                             for arch in TRAINABLE}}
    return {"batch_suggestion": batchsize.suggest(architecture, size, optimizer, memory, name), "batch_fit": fit}


@login_required
@require_GET
def model_runs(request: HttpRequest, model_id: int) -> HttpResponse:
    """Every training run of a model, their curves on shared charts."""
    model = model_for_user(request.user, model_id, Action.VIEW)
    runs = training_runs_of_model(model)
    context = {"model": model, "project": model.project, "team": model.project.team, "runs": runs,
               "series": runs_series(list(runs))}
    return render(request, "registry/model_runs.html", context)


@login_required
@require_GET
def model_detail(request: HttpRequest, model_id: int) -> HttpResponse:
    model = model_for_user(request.user, model_id, Action.VIEW)
    role = authorize(request.user, model.project.team_id, Action.VIEW)
    artifacts = list(artifacts_of_model(model))
    for artifact in artifacts:  # an INT8 artifact's row says its top-1 after quantization
        artifact.quantization = quantization_figures(artifact.metrics)
    context = {
        "model": model,
        "project": model.project,
        "team": model.project.team,
        "artifacts": artifacts,
        "graph": lineage(artifacts),
        "can_write": role_allows(role, Action.WRITE),
        "preprocessing": recipe.complete(model.preprocessing),
        "recipe": recipe.describe(model.preprocessing),
        "resizes": recipe.RESIZES,
        "input_note": services.model_input_note(model=model, artifacts=artifacts),
        "outputs": next((a.inspection.get("outputs") or [] for a in artifacts if a.ready_at), []),
        "score_choices": Scores.choices,
        "text": _text_facts(model, artifacts),
    }
    return render(request, "registry/model_detail.html", context)


def _text_facts(model: Model, artifacts: list[Artifact]) -> dict | None:
    """A text model's architecture, longest sequence and tokenizer, from its newest artifact that says them."""
    if model.modality != Modality.TEXT:
        return None
    for artifact in reversed(artifacts):
        details = artifact.inspection.get("details") or {}
        if artifact.ready_at and details.get("tokenizer"):
            return {**details, "inputs": artifact.inspection.get("inputs") or []}
    return None


@login_required
@require_POST
def model_edit(request: HttpRequest, model_id: int) -> HttpResponse:
    model = model_for_user(request.user, model_id, Action.WRITE)
    post = request.POST
    preprocessing = {key: post[key] for key in ("fit", "crop", "resize", "value_range", "layout", "color") if key in post}
    preprocessing.update({
        "input_size": [post.get("input_height"), post.get("input_width")],
        "mean": [v for v in post.get("mean", "").replace(",", " ").split()],
        "std": [v for v in post.get("std", "").replace(",", " ").split()],
    })
    output = post.get("output_index", "")
    try:
        services.model_update(
            model=model, name=post.get("name"), description=post.get("description", ""), labels=post.get("labels", ""),
            preprocessing=preprocessing if model.modality != Modality.TEXT else None, scores=post.get("scores") or None,
            output_index=int(output) if output.isdigit() else None,
        )
    except ValidationError as error:
        form_errors(request, error)
    else:
        messages.success(request, "Saved. Jobs started from now on use these labels and preprocessing.")
    return redirect("model_detail", model_id=model.id)


@login_required
@require_POST
def model_labels_confirm(request: HttpRequest, model_id: int) -> HttpResponse:
    model = model_for_user(request.user, model_id, Action.WRITE)
    services.model_update(model=model, labels_confirmed=True)
    messages.success(request, f"Confirmed the {len(model.labels)} class labels.")
    return redirect("model_detail", model_id=model.id)


@login_required
@require_POST
def model_delete(request: HttpRequest, model_id: int) -> HttpResponse:
    model = model_for_user(request.user, model_id, Action.WRITE)
    try:
        services.model_delete(model=model)
    except ValidationError as error:
        form_errors(request, error)
        return redirect("model_detail", model_id=model.id)
    messages.success(request, f"Model {model.name} deleted.")
    return redirect("project_detail", project_id=model.project_id)


@login_required
@require_GET
def artifact_detail(request: HttpRequest, artifact_id: int) -> HttpResponse:
    artifact = artifact_for_user(request.user, artifact_id, Action.VIEW)
    role = authorize(request.user, artifact.model.project.team_id, Action.VIEW)
    context = {
        "artifact": artifact,
        "model": artifact.model,
        "project": artifact.model.project,
        "team": artifact.model.project.team,
        "job": artifact.job,
        "inspection": artifact.inspection,
        "lineage": services.artifact_lineage(artifact),
        "recipe": recipe.describe(artifact.model.preprocessing),
        "text": _text_facts(artifact.model, [artifact]),  # a text model's card instead of image preprocessing
        "can_write": role_allows(role, Action.WRITE),
        **artifact_panels(artifact),  # convert, quantize and measure (webapp.optimize)
    }
    return render(request, "registry/artifact_detail.html", context)


@login_required
@require_GET
def artifact_download(request: HttpRequest, artifact_id: int) -> HttpResponse:
    artifact = artifact_for_user(request.user, artifact_id, Action.VIEW)
    if artifact.state != "ready":
        raise Http404("This artifact is not ready to download.")
    try:
        return services.artifact_download(request, artifact)
    except services.FilesMissing as missing:
        return HttpResponseGone(str(missing), content_type="text/plain; charset=utf-8")


@login_required
@require_POST
def artifact_delete(request: HttpRequest, artifact_id: int) -> HttpResponse:
    artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
    try:
        services.artifact_delete(artifact=artifact)
    except ValidationError as error:
        form_errors(request, error)
        return redirect("artifact_detail", artifact_id=artifact.id)
    messages.success(request, "Artifact deleted.")
    return redirect("model_detail", model_id=artifact.model_id)
