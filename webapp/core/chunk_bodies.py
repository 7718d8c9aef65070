"""tus chunks reach the upload view without a second copy on disk.

daphne reads a whole request body before it calls the application and hands it over as ASGI
messages, all in memory; Django's ASGIHandler would then copy a body over 2.5 MB into a spooled
temporary file on disk before the view runs, and the view copies it again into the upload's
part file. For a tus PATCH (bounded by UPLOAD_CHUNK_MAX_BYTES) `ChunkASGIHandler` hands the view
the messages' bytes themselves, read in order, so each chunk is written to disk once, by the view.
Other requests keep Django's spooling.
"""

import io
from collections import deque
from contextvars import ContextVar

from django.core.handlers.asgi import ASGIHandler
from django.core.exceptions import RequestAborted

from webapp.core.body_limits import TUS_CHUNK

_tus_chunk: ContextVar[bool] = ContextVar("tus_chunk", default=False)


class MessageBody(io.RawIOBase):
    """The bytes of ASGI body messages as one readable stream, without joining them. `read` hands
    out the messages themselves (at most `size` bytes, never more than one message), so the view
    writes and hashes the bytes daphne made instead of copies of them."""

    def __init__(self, parts: list[bytes]) -> None:
        self._parts = deque(memoryview(part) for part in parts if part)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if not self._parts or not size:
            return b""
        head = self._parts[0]
        if len(head) <= size:
            self._parts.popleft()
            return head.obj if len(head) == len(head.obj) else head.tobytes()
        self._parts[0] = head[size:]
        return head[:size].tobytes()

    def readinto(self, buffer) -> int:
        if not self._parts:
            return 0
        head = self._parts[0]
        count = min(len(buffer), len(head))
        buffer[:count] = head[:count]
        if count == len(head):
            self._parts.popleft()
        else:
            self._parts[0] = head[count:]
        return count


class ChunkASGIHandler(ASGIHandler):
    async def handle(self, scope, receive, send):
        token = _tus_chunk.set(scope.get("method") == "PATCH" and bool(TUS_CHUNK.match(scope.get("path", ""))))
        try:
            return await super().handle(scope, receive, send)
        finally:
            _tus_chunk.reset(token)

    async def read_body(self, receive):
        if not _tus_chunk.get():
            return await super().read_body(receive)
        parts = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return MessageBody(parts)
