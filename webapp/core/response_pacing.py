"""Responses go out no faster than the client takes them.

daphne writes every body message the application sends straight into twisted's buffer for the
connection, and the application's `send` returns at once: a client reading a 2 GB download
slowly would have the whole file read from storage into the web process's memory. Twisted already
says when a connection's send buffer is full (it pauses the request's registered push producer)
and when it has drained (resumes it). `PacedWebRequest` registers such a producer while a body
streams, and `paced_handle_reply` makes the application's `send` wait until the buffer has room
again, so a streaming response holds at most about one block in memory per connection.
"""

import asyncio

from daphne.http_protocol import WebRequest
from daphne.server import Server


class _Drain:
    """A twisted push producer that only records whether the connection wants more bytes."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.ready.set()

    def pauseProducing(self) -> None:  # noqa: N802 (twisted's names)
        self.ready.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.ready.set()

    stopProducing = resumeProducing  # the connection is going: never leave a sender waiting


class PacedWebRequest(WebRequest):
    drain: _Drain | None = None

    def handle_reply(self, message):
        if message.get("type") == "http.response.body":
            if message.get("more_body", False) and self.drain is None:
                self.drain = _Drain()
                self.registerProducer(self.drain, True)
            elif not message.get("more_body", False):
                self._stop_pacing()  # before daphne finishes the request
        super().handle_reply(message)

    def connectionLost(self, reason):  # noqa: N802
        self._stop_pacing()
        super().connectionLost(reason)

    def _stop_pacing(self) -> None:
        if self.drain is not None:
            if self.producer is self.drain:
                self.unregisterProducer()
            self.drain.resumeProducing()
            self.drain = None


_daphne_handle_reply = Server.handle_reply


async def paced_handle_reply(self, protocol, message):
    """daphne's Server.handle_reply, returning only once the connection can take more."""
    await _daphne_handle_reply(self, protocol, message)
    drain = getattr(protocol, "drain", None)
    if drain is not None:
        await drain.ready.wait()
