"""The artifact page's convert and quantize forms (each starts a job), and the optimize panels that
page shows: what can be done to the artifact, the quantization report, the measure panel."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from webapp.access import Action
from webapp.core.throttles import throttled_page
from webapp.core.views import form_errors
from webapp.datasets.models import Dataset
from webapp.datasets.selectors import chosen_dataset, ready_datasets_of_project
from webapp.jobs.kinds import KINDS, submission_key
from webapp.optimize import services
from webapp.optimize.fit import dataset_matches
from webapp.optimize.measure_views import measure_context
from webapp.optimize.quantization import quantization_figures
from webapp.registry.models import Artifact, Origin
from webapp.registry.selectors import artifact_for_user


def artifact_panels(artifact: Artifact) -> dict:
    """The artifact page's context for what this app offers (registry.views.artifact_detail)."""
    datasets = list(ready_datasets_of_project(artifact.model.project_id))
    quantization = quantization_figures(artifact.metrics)
    fitting = [(dataset, dataset_matches(artifact, dataset)) for dataset in datasets
               if dataset.modality == artifact.model.modality]
    return {
        "convertible": artifact.state == "ready" and artifact.format != "openvino_ir",
        "convert_fields": KINDS["convert"].serializer().fields,
        "datasets": datasets,
        "convert_datasets": [dataset for dataset in datasets if dataset.modality == artifact.model.modality],
        "quantizable": _quantizable(artifact),
        "quantize_fields": KINDS["quantize"].serializer().fields,
        "quantize_datasets": fitting,
        # a labelled dataset of the model's classes first: it also measures the accuracy
        "quantize_dataset": next((dataset.id for dataset, fits in sorted(fitting, key=lambda pair: not pair[0].labelled)
                                  if fits), None),
        "quantization": quantization,
        "quantization_dataset": bool(quantization and quantization["dataset"] and Dataset.objects.filter(
            id=quantization["dataset"], project__team_id=artifact.model.project.team_id).exists()),  # a link, if kept
        "measure": measure_context(artifact),  # benchmark and evaluate forms, latest figures (measure_views)
    }


def _quantizable(artifact: Artifact) -> bool:
    """Ready and not INT8 already: the form is offered (the service has the last word)."""
    return (artifact.state == "ready" and artifact.precision != "int8" and artifact.origin != Origin.QUANTIZED
            and artifact.format in services.QUANTIZABLE["ptq"])


@login_required
@require_POST
@throttled_page("jobs")
def artifact_convert(request: HttpRequest, artifact_id: int) -> HttpResponse:
    artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
    fields = KINDS["convert"].serializer().fields
    params = {name: value for name, value in request.POST.items() if name in fields and value != ""}
    params["embed_preprocessing"] = "embed_preprocessing" in request.POST
    params["tokenizer_ir"] = "tokenizer_ir" in request.POST  # unchecked: not sent at all
    try:
        dataset = chosen_dataset(request.user, params) if params.get("dataset") else None  # else generated inputs
        job = services.artifact_convert(artifact=artifact, user=request.user, params=params, dataset=dataset,
                                        idempotency_key=submission_key(request))
    except ValidationError as error:
        form_errors(request, error)
        return redirect("artifact_detail", artifact_id=artifact.id)
    return redirect("job_detail", job_id=job.id)


@login_required
@require_POST
@throttled_page("jobs")
def artifact_quantize(request: HttpRequest, artifact_id: int) -> HttpResponse:
    artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
    fields = KINDS["quantize"].serializer().fields
    params = {name: value for name, value in request.POST.items() if name in fields and value != ""}
    params["fast_bias_correction"] = "fast_bias_correction" in request.POST  # unchecked: not sent at all
    params["ignored_scope"] = request.POST.get("ignored_scope", "").splitlines()  # one layer or re:pattern a line
    try:
        dataset = chosen_dataset(request.user, params)
        job = services.artifact_quantize(artifact=artifact, user=request.user, dataset=dataset, params=params,
                                         idempotency_key=submission_key(request))
    except ValidationError as error:
        form_errors(request, error)
        return redirect("artifact_detail", artifact_id=artifact.id)
    return redirect("job_detail", job_id=job.id)
