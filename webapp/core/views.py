from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")


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
