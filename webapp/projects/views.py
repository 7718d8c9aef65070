from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.access import Action, authorize, role_allows
from webapp.datasets.selectors import dataset_rows_of_project
from webapp.jobs.selectors import JOBS_PER_PAGE, job_rows_of_project
from webapp.registry.selectors import MODELS_PER_PAGE, model_rows_of_project
from webapp.projects import services
from webapp.projects.deletion import contents_of
from webapp.projects.failed_imports import failed_imports_of_project
from webapp.projects.forms import ProjectForm
from webapp.projects.selectors import project_for_user
from webapp.teams.models import Team


def _form_errors(form: ProjectForm, error: ValidationError) -> None:
    for field, errors in error.message_dict.items():
        for message in errors:
            form.add_error(field if field in form.fields else None, message)


@login_required
@require_POST
def project_create(request: HttpRequest, team_id: int) -> HttpResponse:
    authorize(request.user, team_id, Action.WRITE)
    team = get_object_or_404(Team, id=team_id)
    form = ProjectForm(request.POST)
    if form.is_valid():
        try:
            project = services.project_create(team=team, creator=request.user, **form.cleaned_data)
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, f"Project {project.name} created.")
            return redirect("project_detail", project_id=project.id)
    for message in [m for errors in form.errors.values() for m in errors]:
        messages.error(request, message)
    return redirect("team_detail", team_id=team.id)


@login_required
@require_GET
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_user(request.user, project_id, Action.VIEW)
    role = authorize(request.user, project.team_id, Action.VIEW)
    jobs = Paginator(job_rows_of_project(project.id), JOBS_PER_PAGE).get_page(request.GET.get("jobs"))
    context = {
        "project": project,
        "team": project.team,
        "can_write": role_allows(role, Action.WRITE),
        "can_manage": role_allows(role, Action.MANAGE),
        "jobs": jobs,
        "datasets": dataset_rows_of_project(project.id),
        "models": Paginator(model_rows_of_project(project.id), MODELS_PER_PAGE).get_page(request.GET.get("models")),
        "failed_imports": failed_imports_of_project(project.id),
        "failed_import_expiry_days": settings.FAILED_IMPORT_EXPIRY_DAYS,
    }
    return render(request, "projects/project_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def project_edit(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_user(request.user, project_id, Action.WRITE)
    initial = {"name": project.name, "description": project.description}
    form = ProjectForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.project_update(project=project, **form.cleaned_data)
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, "Project saved.")
            return redirect("project_detail", project_id=project.id)
    return render(request, "projects/project_edit.html", {"project": project, "team": project.team, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def project_delete(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: what goes with the project, to confirm; POST: delete it."""
    project = project_for_user(request.user, project_id, Action.MANAGE)
    if request.method == "POST":
        services.project_delete(project=project)
        messages.success(request, f"Project {project.name} and everything in it deleted.")
        return redirect("team_detail", team_id=project.team_id)
    return render(request, "delete_confirm.html", {
        "team": project.team, "subject": f"project {project.name}", "contents": contents_of([project.id]),
        "cancel_url": reverse("project_detail", args=[project.id]), "action": reverse("project_delete", args=[project.id]),
    })
