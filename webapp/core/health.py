"""What /healthz asks: the three things every process shares (docs/architecture.md, Processes),
each answering or failing with a short reason."""

import uuid

import redis
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

TIMEOUT_SECONDS = 2


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()


def _storage() -> None:
    """A tiny file written, read back and deleted: reachable, allowed and not read-only."""
    key = default_storage.save(f"healthz/{uuid.uuid4().hex}", ContentFile(b"ok"))
    try:
        with default_storage.open(key, "rb") as handle:
            if handle.read() != b"ok":
                raise OSError("a file written there read back different")
    finally:
        default_storage.delete(key)


CHECKS = {"database": _database, "redis": _redis, "storage": _storage}


def health() -> dict[str, str]:
    """{"database": "ok", "redis": "failed: Connection refused", ...}"""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:  # any failure is this part's state, said in a few words
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            results[name] = f"failed: {reason}"
        else:
            results[name] = "ok"
    return results
