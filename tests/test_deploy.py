"""Settings as a deployment sees them: each case loads settings afresh in its own process."""

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT

# Whatever the test run (or the developer's shell) set must not leak into these fresh processes.
CONFIG_VARIABLES = (
    "VINTNER_PRODUCTION", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL",
    "REDIS_URL", "VINTNER_DATA_DIR", "STATIC_ROOT", "MEDIA_ROOT", "STORAGE_BACKEND", "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
)

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "secret_key": settings.SECRET_KEY,
    "data_dir": str(settings.DATA_DIR), "debug": settings.DEBUG, "allowed_hosts": settings.ALLOWED_HOSTS,
    "redis_url": settings.REDIS_URL, "media_root": str(settings.MEDIA_ROOT),
}))
"""


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    clean.update(DJANGO_SETTINGS_MODULE="webapp.settings", **env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def production_env(data_dir: Path) -> dict[str, str]:
    return {
        "VINTNER_PRODUCTION": "1",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "vintner.example.com",
        "VINTNER_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'prod.sqlite3'}",
    }


def test_it_passes_check_deploy_in_production_mode(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no issues" in output


def test_it_refuses_production_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = run(["manage.py", "check"], **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when VINTNER_PRODUCTION=1." in result.stderr
    assert not (tmp_path / "secret_key").exists()  # and no key was made up for it


def test_it_refuses_debug_in_production(tmp_path):
    result = run(["manage.py", "check"], **production_env(tmp_path), DEBUG="1")
    assert result.returncode != 0
    assert "ImproperlyConfigured: DEBUG must be off when VINTNER_PRODUCTION=1." in result.stderr


def test_it_defaults_to_sqlite_and_a_private_generated_key_in_the_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    first = run(["-c", PRINT_SETTINGS], VINTNER_DATA_DIR=str(data_dir))
    assert first.returncode == 0, first.stderr
    values = json.loads(first.stdout.strip().splitlines()[-1])

    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"] == str(data_dir.resolve() / "vintner.sqlite3")
    assert values["media_root"] == str(data_dir.resolve() / "media")
    assert values["debug"] is False
    assert values["allowed_hosts"] == ["127.0.0.1", "localhost", "[::1]"]
    assert values["redis_url"] == "redis://127.0.0.1:6379/0"

    key_file = data_dir / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == values["secret_key"]
    assert len(values["secret_key"]) >= 50
    assert sorted(path.name for path in data_dir.iterdir() if path.name.startswith(".")) == []  # no drafts left

    second = run(["-c", PRINT_SETTINGS], VINTNER_DATA_DIR=str(data_dir))
    assert json.loads(second.stdout.strip().splitlines()[-1])["secret_key"] == values["secret_key"]  # kept, not remade
