"""HTTP to the REST API (/api/v1/) with a token, and the API's errors said in words."""

import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import requests

from vintner_cli import __version__

TIMEOUT = (10, 60)  # connect, read (seconds)


class ApiError(Exception):
    """A request the server refused or could not answer; `str()` is the message for the user."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def error_text(payload: Any) -> str:
    """DRF's error bodies in one line: {"detail": …}, {"field": ["…"]}, ["…"]."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, list):
        return " ".join(error_text(item) for item in payload)
    if isinstance(payload, dict):
        if set(payload) == {"detail"}:
            return error_text(payload["detail"])
        parts = []
        for field, value in payload.items():
            text = error_text(value)
            parts.append(text if field in ("non_field_errors", "detail") else f"{field}: {text}")
        return " ".join(part if part.endswith((".", "!", "?")) else f"{part}." for part in parts)
    return str(payload)


def response_error(response: requests.Response, what: str = "") -> ApiError:
    try:
        message = error_text(response.json())
    except ValueError:
        message = response.text.strip()[:300] or response.reason
    if response.status_code == 401:
        message = f"{message} Log in again: vintner login."
    elif response.status_code == 404 and what and _generic_not_found(message):
        # Another team's object answers exactly like a missing one, by design.
        message = f"{what} was not found, or you may not see it."
    return ApiError(f"{message} (HTTP {response.status_code})", response.status_code)


def _generic_not_found(message: str) -> bool:
    return message in ("Not found.", "No such object.", "") or (
        message.startswith("No ") and message.endswith("matches the given query."))


def attachment_name(header: str) -> str | None:
    """The file name of a Content-Disposition header (RFC 6266: filename* first), as a bare name."""
    match = re.search(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", header, re.IGNORECASE)
    if match:
        name = unquote(match.group(1).strip())
    else:
        match = re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"|filename\s*=\s*([^;]+)', header, re.IGNORECASE)
        if not match:
            return None
        name = (match.group(1) or match.group(2) or "").replace('\\"', '"').strip()
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # never a path the server chose
    return name if name not in ("", ".", "..") else None


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"vintner-cli/{__version__}"
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"} if self.token else {}

    def api_url(self, path: str) -> str:
        return f"{self.url}/api/v1/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, what: str = "", **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.api_url(path), timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError:
            raise ApiError(f"Cannot reach the server at {self.url}: is it running, and is the address right?") from None
        except requests.Timeout:
            raise ApiError(f"The server at {self.url} did not answer in time.") from None
        except requests.RequestException as error:
            raise ApiError(f"Request to {self.url} failed: {error}") from None
        if response.status_code >= 400:
            raise response_error(response, what)
        return response

    def get(self, path: str, *, what: str = "", **params) -> Any:
        return self.request("GET", path, what=what, params=params or None).json()

    def post(self, path: str, body: dict | None = None, *, what: str = "", headers: dict | None = None) -> Any:
        return self.request("POST", path, what=what, json=body or {}, headers=headers).json()

    def patch(self, path: str, body: dict, *, what: str = "") -> Any:
        return self.request("PATCH", path, what=what, json=body).json()

    def token_for(self, username: str, password: str) -> str:
        """POST /auth/token/ (form fields, like the README's curl): a new token, named for this host."""
        name = f"vintner on {socket.gethostname()}"[:100]
        response = self.request("POST", "auth/token/", data={"username": username, "password": password, "name": name})
        return response.json()["token"]

    def stream(self, path: str, *, what: str = "") -> tuple[requests.Response, Iterator[bytes]]:
        response = self.request("GET", path, what=what, stream=True)
        return response, response.iter_content(chunk_size=1 << 20)
