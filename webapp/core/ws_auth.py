"""Who opens a websocket: an API token in the handshake's Authorization header, else the session.

The origin check exists because a browser sends the session cookie on its own, to whichever page
opens the socket (cross-site websocket hijacking). A token is never sent on its own: a browser
cannot put an Authorization header on a websocket, so a handshake that carries one comes from a
program holding the token, like the `vintner` command line, which sends no Origin (the only
Authorization a browser adds by itself is HTTP Basic or Digest, which goes the session's way). Such a
handshake is authenticated by the token alone (a wrong, expired or revoked one is anonymous, never rescued by a
cookie) and skips the origin check; every other handshake goes through the origin check and the
session, exactly as before. The consumers then check access as for any user.
"""

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser

from webapp.core.tokens import token_check


def _token_in(headers) -> str | None:
    """The key of `Authorization: Token <key>` (DRF's TokenAuthentication's form), "" if malformed."""
    for name, value in headers:
        if name.lower() == b"authorization":
            keyword, _, key = value.decode("latin1").strip().partition(" ")
            if keyword.lower() != "token":
                return None  # another scheme: not ours to judge
            key = key.strip()
            return key if key and " " not in key else ""
    return None


@database_sync_to_async
def _user_for(key: str):
    token, _ = token_check(key)  # expired, revoked or unknown: anonymous, whom every consumer refuses
    return token.user if token else AnonymousUser()


class TokenOrSessionAuth:
    """ASGI middleware for the websocket router: see the module's docstring."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.browser = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope, receive, send):
        key = _token_in(scope.get("headers", []))
        if key is None:
            return await self.browser(scope, receive, send)
        return await self.inner({**scope, "user": await _user_for(key)}, receive, send)
