"""Rate limits (DRF's throttles, counted in the Redis cache) and django-axes' lockout answer.

Every limit is a scope of settings.THROTTLE_RATES: "login" per address (the sign-in page and the
token endpoint), "uploads" and "jobs" per user. Only the POST that creates is counted; reading
the same list is not. Past the limit the answer is a 429 with Retry-After and nothing is made."""

import functools
import math

from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.throttling import ScopedRateThrottle


class CreateRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle (per user, or per address when anonymous) over the view's
    `throttle_scope`, counting POSTs only, at the rate the settings say now (tests change it)."""

    def get_rate(self) -> str | None:
        return settings.THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


class _PageView:
    """What ScopedRateThrottle asks of a view, for a plain Django view."""

    def __init__(self, scope: str) -> None:
        self.throttle_scope = scope


def throttled_page(scope: str):
    """The same limit for a Django view: past it, a 429 page with Retry-After."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            throttle = CreateRateThrottle()
            if not throttle.allow_request(request, _PageView(scope)):
                return too_many(request, throttle.wait())
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def too_many(request: HttpRequest, wait: float | None, message: str = "") -> HttpResponse:
    """A 429 page that says when to try again."""
    seconds = max(1, math.ceil(wait or 1))
    text = message or f"Too many attempts. Try again in {_duration(seconds)}."
    response = render(request, "429.html", {"message": text}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def lockout_seconds(request) -> int:
    cool_off = get_cool_off(request)
    return max(1, math.ceil(cool_off.total_seconds())) if cool_off else 3600


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out sign-in on the page (AXES_LOCKOUT_CALLABLE)."""
    seconds = lockout_seconds(request)
    return too_many(request, seconds, lockout_text(seconds))


def lockout_text(seconds: int) -> str:
    return f"Too many wrong passwords for this account from your address. Try again in {_duration(seconds)}."


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"
