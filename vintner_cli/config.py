"""Where the server and the token come from: flags, then the environment, then the file that
`vintner login` writes (~/.config/vintner/config.json, mode 0600).

A stored token is only ever sent to the server it was issued by: pointing the client at another
URL (--url or VINTNER_URL) drops it, unless VINTNER_TOKEN says otherwise explicitly.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """Something the user has to fix before any request is made (exit code 2)."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vintner"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vintner"


def config_path() -> Path:
    return config_dir() / "config.json"


def normalize_url(url: str) -> str:
    """`host:8000` → `http://host:8000`; no trailing slash; only http and https."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"“{url}” is not a server address: give one like http://host:8000.")
    return url


@dataclass(frozen=True)
class Settings:
    url: str | None
    token: str | None
    username: str | None = None


def read_file() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"Cannot read {path}: {error}. Delete it and log in again.") from None
    return data if isinstance(data, dict) else {}


def resolve(url_flag: str | None = None) -> Settings:
    """The server and token this invocation uses."""
    stored = read_file()
    stored_url = stored.get("url")
    url = url_flag or os.environ.get("VINTNER_URL") or stored_url
    url = normalize_url(url) if url else None
    token = os.environ.get("VINTNER_TOKEN") or None
    username = None
    if token is None and url and stored_url and url == normalize_url(stored_url):
        token, username = stored.get("token"), stored.get("username")
    return Settings(url=url, token=token, username=username)


def save(*, url: str, token: str, username: str) -> Path:
    """Write the file readable by its owner only (the token is as good as the password)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"url": url, "token": token, "username": username}, handle, indent=2)
    os.chmod(temporary, 0o600)  # whatever the umask
    os.replace(temporary, path)
    return path


def forget() -> bool:
    """Remove the stored token; True if there was one."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
