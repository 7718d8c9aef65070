from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.access import Action, authorize, role_allows
from webapp.core.throttles import throttled_page
from webapp.jobs import services
from webapp.jobs.kinds import DIRECT_KINDS, KINDS, submission_key
from webapp.jobs.selectors import job_for_user, job_log_lines, job_waiting
from webapp.projects.selectors import project_for_user


@login_required
@require_POST
@throttled_page("jobs")
def job_submit(request: HttpRequest, project_id: int, kind: str) -> HttpResponse:
    project = project_for_user(request.user, project_id, Action.WRITE)
    if kind not in DIRECT_KINDS:
        messages.error(request, f"Unknown job kind “{kind}”.")
        return redirect("project_detail", project_id=project.id)
    params = {name: value for name, value in request.POST.items() if name in KINDS[kind].serializer().fields}
    try:
        job, _ = services.job_submit(
            project=project, user=request.user, kind=kind, params=params, idempotency_key=submission_key(request)
        )
    except ValidationError as error:
        for field, problems in error.message_dict.items():
            for problem in problems:
                messages.error(request, f"{field.removeprefix('params.')}: {problem}")
        return redirect("project_detail", project_id=project.id)
    return redirect("job_detail", job_id=job.id)


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = job_for_user(request.user, job_id, Action.VIEW)
    role = authorize(request.user, job.project.team_id, Action.VIEW)
    context = {
        "job": job,
        "project": job.project,
        "can_write": role_allows(role, Action.WRITE),
        # runs that train show the training strip and charts from the start (QAT: a quantize job)
        "trains": job.kind == "train" or (job.kind == "quantize" and job.params.get("method") == "qat"),
        "waiting": job_waiting(job),
        "params": params_readable(job.params),
    }
    return render(request, "jobs/job_detail.html", context)


def params_readable(params: dict) -> list[tuple[str, str]]:
    """A job's parameters as (name, value) lines a person reads: names with spaces, yes/no,
    lists joined, unset values as “default”."""
    def text(value) -> str:
        if value is None or value == "":
            return "default"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ", ".join(text(item) for item in value) or "none"
        if isinstance(value, dict):
            return ", ".join(f"{key} {text(item)}" for key, item in value.items()) or "none"
        return str(value)

    return [(str(name).replace("_", " "), text(value)) for name, value in params.items()]


@login_required
@require_GET
def job_row(request: HttpRequest, job_id: int) -> HttpResponse:
    """The job list's row for one job: the live project page fetches it for jobs it has not shown."""
    return render(request, "jobs/job_row.html", {"job": job_for_user(request.user, job_id, Action.VIEW)})


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = services.job_cancel(job=job_for_user(request.user, job_id, Action.WRITE))
    messages.info(request, "Cancel requested." if job.state == "running" else f"The job is {job.state}.")
    return redirect("job_detail", job_id=job.id)


@login_required
@require_GET
def job_log(request: HttpRequest, job_id: int) -> StreamingHttpResponse:
    job = job_for_user(request.user, job_id, Action.VIEW)
    lines = (f"[{line.get('level', 'info')}] {line.get('message', '')}\n" for line in job_log_lines(job))
    response = StreamingHttpResponse(lines, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="job-{job.id}.log"'
    return response
