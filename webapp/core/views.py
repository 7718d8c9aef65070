from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.views.decorators.http import require_GET

from webapp.core.health import health


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """{"status": "ok", "database": "ok", "redis": "ok", "storage": "ok"}; 503 when one failed."""
    parts = health()
    healthy = all(state == "ok" for state in parts.values())
    return JsonResponse({"status": "ok" if healthy else "failed", **parts}, status=200 if healthy else 503)


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on pages without an icon link (the admin, the API's
    own pages, files opened directly): the logo, served from this server's static files."""
    return HttpResponsePermanentRedirect(static("img/vintner.svg"))


def form_errors(request, error: ValidationError) -> None:
    """A service's refusal as messages on the next page, each named by its field."""
    problems = error.message_dict.items() if hasattr(error, "error_dict") else [("", error.messages)]
    for field, texts in problems:
        name = field.removeprefix("params.").removeprefix("preprocessing.")
        for text in texts:
            messages.error(request, f"{name}: {text}" if field and field != "__all__" else text)
