from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.access import Action, authorize, role_allows
from webapp.core import files
from webapp.core.throttles import throttled_page
from webapp.core.views import form_errors
from webapp.datasets import services
from webapp.datasets.models import AUTO_MODALITY, TEXT_COLUMNS, Labelling, Split
from webapp.datasets.selectors import dataset_for_user, items_of_dataset, token_lengths_of
from webapp.jobs.kinds import submission_key
from webapp.projects.selectors import project_for_user
from webapp.uploads.models import Upload

GALLERY_PAGE = 60
MODALITY_CHOICES = [
    (AUTO_MODALITY, "Decide from the file (.csv, .tsv, .jsonl, .json or a zip of them: text; else images)"),
    ("images", "Images: an archive of image files"),
    ("text", "Text: rows of text and label (CSV, TSV or JSON Lines, plain or zipped)"),
]


@login_required
@require_http_methods(["GET", "POST"])
@throttled_page("jobs")
def dataset_new(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the upload page. POST: the page's form, sent by its script once the tus upload is done."""
    project = project_for_user(request.user, project_id, Action.WRITE)
    if request.method == "POST":
        try:
            upload = Upload.objects.filter(id=request.POST.get("upload") or None, created_by=request.user).first()
        except ValidationError:  # not a UUID at all
            upload = None
        try:
            if upload is None:
                raise ValidationError({"upload": "Choose an archive and wait for it to upload."})
            dataset = services.dataset_create(
                project=project,
                user=request.user,
                name=request.POST.get("name", ""),
                upload=upload,
                sha256=request.POST.get("sha256", ""),
                description=request.POST.get("description", ""),
                val_fraction=float(request.POST.get("val_fraction") or 0.2),
                seed=int(request.POST.get("seed") or 0),
                labelling=request.POST.get("labelling") or "auto",
                modality=request.POST.get("modality") or AUTO_MODALITY,
                columns={role: request.POST.get(f"column_{role}", "") for role in TEXT_COLUMNS},
                idempotency_key=submission_key(request),
            )
        except ValueError:
            messages.error(request, "Seed and validation fraction must be numbers.")
        except ValidationError as error:
            form_errors(request, error)  # each message named by its field, as the other forms do
        else:
            return redirect("dataset_detail", dataset_id=dataset.id)
    return render(request, "datasets/dataset_new.html",
                  {"project": project, "team": project.team, "labellings": Labelling.choices,
                   "modalities": MODALITY_CHOICES,
                   "text_columns": [(role, request.POST.get(f"column_{role}", "")) for role in TEXT_COLUMNS]})


@login_required
@require_GET
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = dataset_for_user(request.user, dataset_id, Action.VIEW)
    role = authorize(request.user, dataset.project.team_id, Action.VIEW)
    report = dataset.report
    largest = max((row["total"] for row in report.get("classes", [])), default=0)
    context = {
        "dataset": dataset,
        "project": dataset.project,
        "team": dataset.project.team,
        "job": dataset.import_job,
        "report": report,
        "largest_class": largest,
        "preview": _preview(dataset) if dataset.state == "ready" and not dataset.is_text else [],
        "token_lengths": token_lengths_of(dataset) if dataset.is_text and dataset.state == "ready" else [],
        "largest_bin": max((count for _, _, count in report.get("lengths", {}).get("bins", [])), default=0),
        "can_write": role_allows(role, Action.WRITE),
    }
    return render(request, "datasets/dataset_detail.html", context)


def _preview(dataset, size: int = 12) -> list:
    """A few images of each class (up to `size`), so the preview shows the whole dataset."""
    if not dataset.labelled:
        return list(items_of_dataset(dataset)[:size])
    classes = dataset.classes[:size]
    each = max(1, size // max(len(classes), 1))
    return [item for label in classes for item in items_of_dataset(dataset, label=label)[:each]]


@login_required
@require_GET
def dataset_gallery(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = dataset_for_user(request.user, dataset_id, Action.VIEW)
    if dataset.is_text:
        raise Http404("A text dataset holds rows, not images: its page shows a sample of them.")
    label = request.GET.get("label", "")
    split = request.GET.get("split", "") if request.GET.get("split", "") in Split.values else ""
    if label and label not in dataset.classes:
        raise Http404("No such class.")
    page = Paginator(items_of_dataset(dataset, label=label, split=split), GALLERY_PAGE).get_page(request.GET.get("page"))
    context = {
        "dataset": dataset,
        "project": dataset.project,
        "team": dataset.project.team,
        "page": page,
        "label": label,
        "split": split,
        "splits": Split.values,
    }
    return render(request, "datasets/dataset_gallery.html", context)


@login_required
@require_GET
def dataset_thumb(request: HttpRequest, dataset_id: int, index: int) -> FileResponse:
    dataset = dataset_for_user(request.user, dataset_id, Action.VIEW)
    item = get_object_or_404(dataset.items, index=index)
    response = FileResponse(files.open_stream(f"{dataset.storage_prefix}/{item.thumb}"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=604800, immutable"  # a published dataset never changes
    return response


@login_required
@require_POST
@throttled_page("jobs")
def dataset_import(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = dataset_for_user(request.user, dataset_id, Action.WRITE)
    try:
        services.dataset_import_start(dataset=dataset, user=request.user, idempotency_key=submission_key(request))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("dataset_detail", dataset_id=dataset.id)


@login_required
@require_POST
def dataset_delete(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = dataset_for_user(request.user, dataset_id, Action.WRITE)
    try:
        services.dataset_delete(dataset=dataset)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("dataset_detail", dataset_id=dataset.id)
    messages.success(request, f"Dataset {dataset.name} v{dataset.version} deleted.")
    return redirect("project_detail", project_id=dataset.project_id)
