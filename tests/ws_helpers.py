"""Websocket test helpers: a real signed-in session and the headers a browser would send."""

from django.conf import settings
from django.test import Client


ORIGIN = (b"origin", b"http://127.0.0.1")


def session_cookie(user) -> bytes:
    """Sign in through the real login machinery and return the session cookie header value."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def headers_for(user=None, origin=ORIGIN) -> list[tuple[bytes, bytes]]:
    headers = [origin] if origin else []
    if user is not None:
        headers.append((b"cookie", session_cookie(user)))
    return headers
