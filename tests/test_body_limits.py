"""Request bodies are refused by size before they are read: against a real daphne, a raw socket sends
the headers and waits for the 413 before it would send the body; daphne spools nothing."""

import os
import socket
import tempfile
import uuid
from urllib.parse import urlsplit

import psutil
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application

from webapp.core.body_limits import BodyLimitMiddleware, body_limit

MiB = 2**20


def test_the_limit_depends_on_credentials_and_route(settings):
    anonymous, cookie = [(b"host", b"x")], [(b"Cookie", b"csrftoken=1; sessionid=abc")]
    assert body_limit("POST", "/accounts/login/", anonymous) == settings.BODY_MAX_ANONYMOUS_BYTES
    # a cookie of another name is no session
    assert body_limit("POST", "/accounts/login/", [(b"cookie", b"xsessionid=abc")]) == settings.BODY_MAX_ANONYMOUS_BYTES
    assert body_limit("POST", "/api/v1/projects/", cookie) == settings.BODY_MAX_BYTES
    assert body_limit("PATCH", f"/api/v1/uploads/{uuid.uuid4()}/", [(b"authorization", b"Token t")]) \
        == settings.UPLOAD_CHUNK_MAX_BYTES
    assert body_limit("PATCH", f"/api/v1/uploads/{uuid.uuid4()}/", anonymous) == settings.BODY_MAX_ANONYMOUS_BYTES


def test_the_asgi_middleware_refuses_declared_and_counted_bodies(settings):
    """The same rule for servers that stream bodies to the application: Django's own application
    behind it (a POST to the login page without a CSRF token answers 403 once it is read)."""
    django_app = get_asgi_application()

    async def statuses(headers, chunks) -> list[int]:
        scope = {"type": "http", "method": "POST", "path": "/accounts/login/", "headers": headers,
                 "query_string": b"", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "scheme": "http"}
        talk = ApplicationCommunicator(BodyLimitMiddleware(django_app), scope)
        for index, chunk in enumerate(chunks):
            await talk.send_input({"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1})
        answers = [(await talk.receive_output(10))["status"]]
        while not await talk.receive_nothing(timeout=0.3):  # its body; and no second answer
            message = await talk.receive_output()
            if message["type"] == "http.response.start":
                answers.append(message["status"])
        return answers

    limit = settings.BODY_MAX_ANONYMOUS_BYTES
    assert async_to_sync(statuses)([(b"content-length", str(300 * MiB).encode())], [b""]) == [413]
    assert async_to_sync(statuses)([], [b"x" * (limit // 2)] * 3) == [413]  # no length: counted
    assert async_to_sync(statuses)([], [b"x" * (limit // 2)]) == [403]  # within it: Django answers


def _daphne(url: str) -> psutil.Process:
    port = str(urlsplit(url).port)
    return next(p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and "daphne" in " ".join(p.info["cmdline"]) and port in p.info["cmdline"])


def spooled_bytes(process: psutil.Process) -> int:
    """Bytes in the nameless temporary files the server holds open (twisted spools bodies there)."""
    total, tmp = 0, tempfile.gettempdir()
    for fd in os.listdir(f"/proc/{process.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{process.pid}/fd/{fd}")
            if target.startswith(tmp) and target.endswith(" (deleted)"):
                total += os.stat(f"/proc/{process.pid}/fd/{fd}").st_size
        except FileNotFoundError:
            continue
    return total


def _connect(url: str, head: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
    return sock


def _answer(sock: socket.socket) -> bytes:
    """What the server says before the client sends any body byte, up to its closing the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_daphne_refuses_a_big_anonymous_post_at_its_headers(live_server_url):
    daphne = _daphne(live_server_url)
    sock = _connect(live_server_url, f"POST /accounts/login/ HTTP/1.1\nHost: 127.0.0.1\n"
                                     f"Content-Type: application/x-www-form-urlencoded\nContent-Length: {300 * MiB}\n")
    with sock:
        answer = _answer(sock)  # no body byte sent: the answer comes from the headers alone
        assert answer.startswith(b"HTTP/1.1 413") and b"larger than 64 KiB" in answer
        assert spooled_bytes(daphne) == 0


def test_daphne_refuses_a_big_upload_chunk_before_it_arrives(live_server_url):
    daphne = _daphne(live_server_url)
    sock = _connect(live_server_url, f"PATCH /api/v1/uploads/{uuid.uuid4()}/ HTTP/1.1\nHost: 127.0.0.1\n"
                                     f"Authorization: Token 0123\nTus-Resumable: 1.0.0\nUpload-Offset: 0\n"
                                     f"Content-Type: application/offset+octet-stream\nContent-Length: {80 * MiB}\n"
                                     "Expect: 100-continue\n")  # as curl sends a big body
    with sock:
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 413") and answer.endswith(b"the most this address accepts.\"}")
        assert b"larger than 64 MiB" in answer
        assert spooled_bytes(daphne) == 0


def test_daphne_counts_a_chunked_body_and_stops_reading_it(live_server_url):
    daphne = _daphne(live_server_url)
    sock = _connect(live_server_url, "POST /accounts/login/ HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n"
                                     "Content-Type: application/x-www-form-urlencoded\n")
    piece = b"x" * 16384
    with sock:
        for _ in range(5):  # 80 KiB, and the body never ends: no length to go by, only the count
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 413") and b"larger than 64 KiB" in answer
        assert spooled_bytes(daphne) == 0
