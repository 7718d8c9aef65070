"""API tokens: issued for a username and password (or on the account page), several per user, each
with a name and an expiry; an expired or revoked token signs in nowhere (HTTP: 401; websocket
handshakes: anonymous, refused). The key is shown once; only its SHA-256 is stored."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from webapp.core.models import ApiToken

MAX_DAYS = 365
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per token


def token_issue(*, user, name: str = "", days: int | None = None) -> tuple[ApiToken, str]:
    """A new token and its key (the only time the key is seen)."""
    name = (name or "").strip()[:100] or "API token"
    days = days or settings.API_TOKEN_DAYS
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError({"days": f"A token lasts from 1 to {MAX_DAYS} days."})
    key = secrets.token_hex(20)
    token = ApiToken.objects.create(user=user, name=name, digest=ApiToken.digest_of(key), prefix=key[:8],
                                    expires_at=timezone.now() + timedelta(days=days))
    return token, key


def token_revoke(*, token: ApiToken) -> None:
    token.delete()


def tokens_of_user(user):
    return ApiToken.objects.filter(user=user)


def token_check(key: str) -> tuple[ApiToken | None, str]:
    """The live token of this key and "", or None and why not; notes when it was last used."""
    token = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(key)).first() if key else None
    if token is None:
        return None, "Invalid token."
    now = timezone.now()
    if token.expires_at <= now:
        return None, f"This token expired on {token.expires_at:%Y-%m-%d}; sign in again for a new one."
    if not token.user.is_active:
        return None, "User inactive or deleted."
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        ApiToken.objects.filter(id=token.id).update(last_used_at=now)
    return token, ""


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, against ApiToken: an expired token is a 401 that says so."""

    def authenticate_credentials(self, key: str):
        token, problem = token_check(key)
        if token is None:
            raise AuthenticationFailed(problem)
        return token.user, token
