"""The account page's API tokens: list, issue (the key shown once) and revoke one's own."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from webapp.core import tokens
from webapp.core.numbers import whole_number
from webapp.core.views import form_errors


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    issued = None
    if request.method == "POST":
        raw = request.POST.get("days", "").strip()
        try:
            days = whole_number(raw, low=1, high=tokens.MAX_DAYS) if raw else None
            if raw and days is None:
                raise ValidationError({"days": f"A token lasts from 1 to {tokens.MAX_DAYS} days."})
            issued = tokens.token_issue(user=request.user, name=request.POST.get("name", ""), days=days)
        except ValidationError as error:
            form_errors(request, error)
            return redirect("token_list")
    context = {"tokens": tokens.tokens_of_user(request.user), "issued": issued, "now": timezone.now(),
               "default_days": settings.API_TOKEN_DAYS, "max_days": tokens.MAX_DAYS}
    return render(request, "registration/token_list.html", context)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(tokens.tokens_of_user(request.user), id=token_id)
    tokens.token_revoke(token=token)
    messages.info(request, f"Token “{token.name}” revoked: it signs in nowhere any more.")
    return redirect("token_list")
