"""daphne's request object as Vintner runs it: a body over its limit is refused before it is read
(webapp/core/body_limits.py), and a streaming reply goes no faster than the client reads it
(webapp/core/response_pacing.py)."""

from daphne import http_protocol
from daphne.server import Server

from webapp.core.body_limits import LimitedWebRequest
from webapp.core.response_pacing import PacedWebRequest, paced_handle_reply


class VintnerWebRequest(LimitedWebRequest, PacedWebRequest):
    pass


def install() -> None:
    """daphne's factory looks its request class up in its module at each connection, so this holds
    for every connection made after the application loads."""
    http_protocol.WebRequest = VintnerWebRequest
    Server.handle_reply = paced_handle_reply
