"""Pages and forms for measuring and delivering a model: the benchmark and evaluate forms of an
artifact's page (each starts a job), its performance page, the model's comparison of variants, and
an IR's deployment page with its classify.py. Figures in words come from measure_figures; the
jobs are the record (optimize.comparison reads them the same way)."""

import re
import shlex
from dataclasses import fields as dataclass_fields
from importlib.metadata import version

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from webapp.access import Action, authorize, role_allows
from webapp.core.modality import Modality, rate_unit
from webapp.core.numbers import whole_number
from webapp.core.throttles import throttled_page
from webapp.datasets.models import Dataset
from webapp.datasets.selectors import chosen_dataset, ready_datasets_of_project
from webapp.jobs.kinds import KINDS, submission_key
from workers.pipeline.params import MatrixPoint
from webapp.jobs.models import ACTIVE_STATES, Job, JobState
from webapp.core.views import form_errors
from webapp.optimize import services
from webapp.registry import services as registry
from webapp.optimize.comparison import compare
from webapp.optimize.comparison import row_for as comparison_row
from webapp.optimize.deploy import snippet
from webapp.optimize.fit import dataset_matches
from webapp.optimize.measure_api import comparison_metric, comparison_query
from webapp.optimize.measure_figures import (
    TORCH_FORMATS, benchmark_figures, comparison_figures, evaluation_figures, fps, ms, variant_name,
)
from webapp.registry.models import Artifact, Format
from webapp.optimize.quantization import percent
from webapp.registry.selectors import artifact_for_user, model_for_user

MEASURE_KINDS = ("benchmark", "evaluate")
MATRIX_POINT = re.compile(r"^(\d{1,9})\s*[x×X*]\s*(\d{1,9})$", re.ASCII)  # int() refuses thousands of digits
EVALUATIONS_SHOWN = 4  # the latest per dataset and split


# --- forms (POST) --------------------------------------------------------------------------------


@login_required
@require_POST
@throttled_page("jobs")
def artifact_benchmark(request: HttpRequest, artifact_id: int) -> HttpResponse:
    artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
    try:
        job = services.artifact_benchmark(artifact=artifact, user=request.user, params=benchmark_params(request.POST),
                                          idempotency_key=submission_key(request))
    except ValidationError as error:
        form_errors(request, error)
        return _back(request, artifact, "benchmark")
    return redirect("job_detail", job_id=job.id)


@login_required
@require_POST
@throttled_page("jobs")
def artifact_evaluate(request: HttpRequest, artifact_id: int) -> HttpResponse:
    artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
    try:
        dataset = chosen_dataset(request.user, request.POST, missing="Choose a dataset to evaluate on.")
        job = services.artifact_evaluate(artifact=artifact, user=request.user, dataset=dataset,
                                         params={"split": request.POST.get("split") or "val",
                                                 **({"max_length": request.POST["max_length"].strip()}
                                                    if request.POST.get("max_length", "").strip() else {})},
                                         idempotency_key=submission_key(request))
    except ValidationError as error:
        form_errors(request, error)
        return _back(request, artifact, "evaluate")
    return redirect("job_detail", job_id=job.id)


def benchmark_params(post) -> dict:
    """The benchmark form's fields as BenchmarkParams takes them. Unchecked boxes are not sent at
    all, so each checkbox is read as present or not; the matrix is text, one `4x2` a line."""
    params = {"device": post.get("device") or "CPU", "hints": post.getlist("hints"),
              "matrix": matrix_points(post.get("matrix", "")),
              "layer_counters": "layer_counters" in post, "torch_reference": "torch_reference" in post}
    for name in ("seconds", "rounds", "batch", "sequence_length"):
        if post.get(name, "").strip():
            params[name] = post[name].strip()
    return params


def matrix_points(text: str) -> list[dict]:
    """"4x2" lines (or comma-separated) as [{"batch": 4, "streams": 2}], each within BenchmarkParams'
    limits; anything else is refused, naming the line."""
    limits = {spec.name: spec.metadata for spec in dataclass_fields(MatrixPoint)}
    low_batch, high_batch = limits["batch"]["min"], limits["batch"]["max"]
    low_streams, high_streams = limits["streams"]["min"], limits["streams"]["max"]
    points = []
    for chunk in re.split(r"[\n,;]+", text):
        chunk = chunk.strip()
        if not chunk:
            continue
        match = MATRIX_POINT.match(chunk)
        if not match:
            raise ValidationError({"params.matrix": f"“{chunk[:40]}” is not a batch × streams point; write one a line, "
                                                    f"like 4x2 (batch 4, 2 streams)."})
        batch, streams = int(match[1]), int(match[2])
        if not (low_batch <= batch <= high_batch and low_streams <= streams <= high_streams):
            raise ValidationError({"params.matrix": f"“{chunk}”: the batch is {low_batch} to {high_batch} and the "
                                                    f"streams {low_streams} to {high_streams}."})
        points.append({"batch": batch, "streams": streams})
    return points


def _back(request: HttpRequest, artifact: Artifact, form: str) -> HttpResponse:
    """Where a refused form goes back to: the comparison's Benchmark button to the comparison, else
    the form on the artifact's page."""
    if request.POST.get("back") == "compare":
        return redirect("model_compare", model_id=artifact.model_id)
    return redirect(f"{reverse('artifact_detail', args=[artifact.id])}#{form}")


# --- the artifact page's panel -------------------------------------------------------------------


def measure_jobs(artifact: Artifact) -> QuerySet[Job]:
    """Benchmark and evaluation jobs of an artifact, newest first."""
    return Job.objects.filter(project_id=artifact.model.project_id, kind__in=MEASURE_KINDS,
                              params__artifact=artifact.id).order_by("-created_at", "-id")


def _latest_succeeded(jobs: list[Job], kind: str) -> list[Job]:
    """Succeeded jobs of a kind, the latest to finish first (as optimize.comparison picks them)."""
    done = [job for job in jobs if job.kind == kind and job.state == JobState.SUCCEEDED]
    return sorted(done, key=lambda job: (job.finished_at is not None, job.finished_at, job.id), reverse=True)


def measure_context(artifact: Artifact) -> dict:
    """What the artifact page's measure panel and its benchmark and evaluate forms need
    (optimize.views.artifact_panels puts it in the artifact page's context as `measure`)."""
    if artifact.state != "ready":
        return {}
    jobs = list(measure_jobs(artifact)[:100])
    benchmark = next(iter(_latest_succeeded(jobs, "benchmark")), None)
    evaluation = next(iter(_latest_succeeded(jobs, "evaluate")), None)
    datasets = [(dataset, dataset_matches(artifact, dataset))
                for dataset in ready_datasets_of_project(artifact.model.project_id, labelled_only=True).filter(
                    modality=artifact.model.modality)]
    fields = KINDS["benchmark"].serializer().fields
    made = comparison_row(artifact, None, None)
    return {
        "made_top1": (percent(made.top1), made.top1_from) if made.top1 is not None else None,
        "benchmark": benchmark,
        "latency": ms(benchmark.result.get("latency_ms")) if benchmark else None,
        "fps": fps(benchmark.result.get("fps")) if benchmark else None,
        "cpu": (benchmark.result.get("host") or {}).get("cpu", "") if benchmark else "",
        "evaluation": evaluation,
        "evaluation_figures": evaluation_figures(evaluation.result) if evaluation else None,
        "active": [job for job in jobs if job.state in ACTIVE_STATES],
        "datasets": datasets,
        "dataset": next((dataset.id for dataset, fits in datasets if fits), None),
        "seconds": fields["seconds"].default, "seconds_min": fields["seconds"].min_value,
        "seconds_max": fields["seconds"].max_value,
        "rounds": fields["rounds"].default, "rounds_min": fields["rounds"].min_value,
        "rounds_max": fields["rounds"].max_value,
        "torch": artifact.format in TORCH_FORMATS,
        "reference": services.torch_ancestor(artifact),
        "deployable": artifact.format == Format.OPENVINO_IR,
    }


def _page(artifact: Artifact, request: HttpRequest) -> dict:
    role = authorize(request.user, artifact.model.project.team_id, Action.VIEW)
    return {"artifact": artifact, "model": artifact.model, "project": artifact.model.project,
            "team": artifact.model.project.team, "can_write": role_allows(role, Action.WRITE)}


# --- the performance page ------------------------------------------------------------------------


@login_required
@require_GET
def artifact_performance(request: HttpRequest, artifact_id: int) -> HttpResponse:
    """The latest succeeded benchmark of an artifact in full (or the one `?benchmark=` names), the
    others listed, and its latest evaluation on each dataset split."""
    artifact = artifact_for_user(request.user, artifact_id, Action.VIEW)
    jobs = list(measure_jobs(artifact)[:200])
    succeeded = _latest_succeeded(jobs, "benchmark")
    shown = next(iter(succeeded), None)
    asked = whole_number(request.GET.get("benchmark", ""), low=1)
    if asked is not None:
        shown = next((job for job in succeeded if job.id == asked), shown)
    figures = benchmark_figures(shown.result, artifact) if shown else None
    reference = None
    if figures and figures["reference"]:
        reference = Artifact.objects.filter(id=figures["reference"], model__project_id=artifact.model.project_id).first()
    others = [{"job": job, "cpu": (job.result.get("host") or {}).get("cpu", "") if job.result else "",
               "latency": ms(job.result.get("latency_ms")) if job.state == JobState.SUCCEEDED else "—",
               "fps": fps(job.result.get("fps")) if job.state == JobState.SUCCEEDED else "—",
               "succeeded": job.state == JobState.SUCCEEDED}
              for job in jobs if job.kind == "benchmark" and job is not shown]
    evaluations, seen = [], set()
    for job in _latest_succeeded(jobs, "evaluate"):
        key = (job.params.get("dataset"), job.params.get("split"))
        if key not in seen and len(evaluations) < EVALUATIONS_SHOWN:
            seen.add(key)
            evaluations.append({"job": job, **evaluation_figures(job.result)})
    kept = set(Dataset.objects.filter(project_id=artifact.model.project_id,
                                      id__in=[e["dataset"] for e in evaluations]).values_list("id", flat=True))
    for evaluation in evaluations:
        evaluation["dataset_kept"] = evaluation["dataset"] in kept
    made = comparison_row(artifact, None, None)  # the top-1 the job that made it measured, as the comparison reads it
    context = {
        **_page(artifact, request),
        "name": variant_name(artifact),
        "made_top1": (percent(made.top1), made.top1_from) if made.top1 is not None else None,
        "shown": shown,
        "latest": bool(shown and shown.id == succeeded[0].id),
        "figures": figures,
        "reference": reference,
        "others": others,
        "evaluations": evaluations,
        "active": [job for job in jobs if job.state in ACTIVE_STATES],
    }
    return render(request, "optimize/artifact_performance.html", context)


# --- the comparison ------------------------------------------------------------------------------


@login_required
@require_GET
def model_compare(request: HttpRequest, model_id: int) -> HttpResponse:
    """Every ready artifact of a model side by side, with the pick for each goal."""
    model = model_for_user(request.user, model_id, Action.VIEW)
    role = authorize(request.user, model.project.team_id, Action.VIEW)
    try:
        dataset_id, split, max_drop = comparison_query(request.GET)
        metric = comparison_metric(request.GET)
    except ValidationError as error:
        form_errors(request, error)
        (dataset_id, split, max_drop), metric = comparison_query({}), "accuracy"
    comparison = compare(model, dataset_id=dataset_id, split=split, max_drop=max_drop, metric=metric)
    fields = KINDS["benchmark"].serializer().fields
    context = {
        "model": model, "project": model.project, "team": model.project.team,
        "can_write": role_allows(role, Action.WRITE),
        "comparison": comparison,
        "figures": comparison_figures(comparison, rate_unit(model.modality)),
        "datasets": ready_datasets_of_project(model.project_id, labelled_only=True).filter(modality=model.modality),
        "dataset_id": dataset_id, "split": split,
        "benchmark_seconds": fields["seconds"].default,
    }
    return render(request, "optimize/model_compare.html", context)


# --- deployment ----------------------------------------------------------------------------------

EXAMPLE_PROBABILITIES = (0.981, 0.012, 0.004, 0.002, 0.001)


@login_required
@require_GET
def artifact_deploy(request: HttpRequest, artifact_id: int) -> HttpResponse:
    """How to run an IR artifact elsewhere: its zip, what it holds, the install line and the
    program (optimize.deploy.snippet) that classifies a picture with it."""
    artifact = artifact_for_user(request.user, artifact_id, Action.VIEW)
    deployable = artifact.state == "ready" and artifact.format == Format.OPENVINO_IR
    text = snippet(artifact) if deployable else ""
    labels = artifact.model.labels or [str(index) for index in range(artifact.num_classes or 0)]
    embedded = (artifact.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"
    text_model = artifact.model.modality == Modality.TEXT
    context = {
        **_page(artifact, request),
        "name": variant_name(artifact),
        "deployable": deployable,
        "snippet": text,
        "openvino": version("openvino"),
        "text": text_model,
        "tokenizers": version("tokenizers") if text_model else "",
        "program": "classify_text.py" if text_model else "classify.py",
        "zip_name": f"{registry.download_stem(artifact)}.zip",  # what artifact_download names it
        "unzip": f"unzip {shlex.quote(registry.download_stem(artifact) + '.zip')} -d {shlex.quote(registry.download_stem(artifact))} "
                 f"&& cd {shlex.quote(registry.download_stem(artifact))}",
        "files": artifact.files,
        "embedded": embedded,
        "example": [(label, f"{p:.3f}") for label, p in zip(labels, EXAMPLE_PROBABILITIES)],
        "irs": [] if deployable else [
            (other, variant_name(other)) for other in artifact.model.artifacts.filter(
                format=Format.OPENVINO_IR, ready_at__isnull=False).order_by("created_at", "id")],
    }
    return render(request, "optimize/artifact_deploy.html", context)


@login_required
@require_GET
def artifact_classify(request: HttpRequest, artifact_id: int) -> HttpResponse:
    """The deployment program of an IR artifact, as a file to save beside model.xml."""
    artifact = artifact_for_user(request.user, artifact_id, Action.VIEW)
    if artifact.state != "ready":
        raise Http404("This artifact is not ready.")
    try:
        text = snippet(artifact)
    except ValueError as error:
        raise Http404(str(error)) from None
    response = HttpResponse(text, content_type="text/x-python; charset=utf-8")
    name = "classify_text.py" if artifact.model.modality == "text" else "classify.py"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
