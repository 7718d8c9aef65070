"""How big a request body may be, decided from the request line and headers alone, and enforced
before the body is read: by the declared Content-Length, and by counting the bytes that stream in
(a chunked body declares none).

One policy, `body_limit`, two places that enforce it:

- `LimitedWebRequest`, daphne's request object with the gate in it. daphne (twisted) reads a
  whole body, spooling it to a temporary file, before it calls the ASGI application at all, so an
  application middleware alone would see a 300 MiB body only once it had arrived. The gate
  answers 413 and closes the connection as soon as the headers say too much, or as soon as the
  bytes received pass the limit; webapp/core/daphne_request.py makes daphne use it.
- `BodyLimitMiddleware`, the same rule at the ASGI layer, for any ASGI server that streams bodies
  to the application as they arrive (uvicorn, hypercorn): declared too big, the application is
  never called; counted too big, it is told the client went away.

Anonymous requests (no session cookie, no Authorization header) get a small limit: signing in
needs a few hundred bytes. A request that presents credentials is not checked here (that needs the
database, and the gate runs before the body is read); a forged cookie gets no more than a signed-in
user's limits, and Django then refuses it.
"""

import json
import re
from collections.abc import Iterable

from daphne.http_protocol import WebRequest
from django.conf import settings

TUS_CHUNK = re.compile(r"^/api/v1/uploads/[^/]+/?$")


def body_limit(method: str, path: str, headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The most bytes this request's body may have."""
    names = {name.lower(): value for name, value in headers}
    cookie_name = settings.SESSION_COOKIE_NAME.encode()
    signed = b"authorization" in names or any(
        part.strip().startswith(cookie_name + b"=") for part in names.get(b"cookie", b"").split(b";")
    )
    if not signed:
        return settings.BODY_MAX_ANONYMOUS_BYTES
    if method.upper() == "PATCH" and TUS_CHUNK.match(path):  # a tus chunk: the upload view writes it to disk
        return settings.UPLOAD_CHUNK_MAX_BYTES
    return settings.BODY_MAX_BYTES


def refusal(limit: int) -> bytes:
    """The 413's JSON body, in the API's shape."""
    size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 2**10} KiB"
    return json.dumps({"detail": f"The request body is larger than {size}, the most this address accepts."}).encode()


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server answers a malformed length itself
    return None


class BodyLimitMiddleware:
    """ASGI: refuse an HTTP body over `body_limit` before the application reads it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers", [])
        limit = body_limit(scope["method"], scope["path"], headers)
        declared = _content_length(headers)
        if declared is not None and declared > limit:
            return await self._refuse(send, limit)
        seen, refused = 0, False

        async def counted():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await self._refuse(send, limit)
                    return {"type": "http.disconnect"}  # the application stops reading and answers nothing
            return message

        return await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(send, limit: int) -> None:
        body = refusal(limit)
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class LimitedWebRequest(WebRequest):
    """daphne's request, refusing an oversized body at its headers or as it streams in."""

    _refused = False

    def gotLength(self, length):  # noqa: N802 (twisted's name): the headers are in, no body yet
        channel = self.channel  # the request line is the channel's until the body is in
        headers = [(name, value) for name, values in self.requestHeaders.getAllRawHeaders() for value in values]
        path = channel._path.decode("latin-1").split("?")[0]
        self._limit = body_limit(channel._command.decode("latin-1"), path, headers)
        self._received = 0
        if length is not None and length > self._limit:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data):  # noqa: N802
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):  # noqa: N802
        if not self._refused:  # a refused request never reaches the application
            super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        self.content = None
        self.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after the answer
        body = refusal(self._limit)
        transport = self.channel.transport
        transport.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        transport.loseConnection()  # after the answer is written; nothing more is read
