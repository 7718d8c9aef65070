"""The command line's pure parts, without a server: where the token comes from (and where it is
never sent), how the API's errors read, parameters, sizes and file names."""

import json
import stat
from pathlib import Path

import pytest

from vintner_cli import config
from vintner_cli.client import attachment_name, error_text
from vintner_cli.main import build_parser, param_value
from vintner_cli.upload import parse_size


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in ("VINTNER_URL", "VINTNER_TOKEN", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_it_keeps_the_token_readable_by_its_owner_only(home):
    path = config.save(url="http://vintner:8000", token="abc", username="alice")
    assert path == home / ".config" / "vintner" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://vintner:8000", "token": "abc", "username": "alice"}
    assert config.resolve() == config.Settings("http://vintner:8000", "abc", "alice")


def test_a_stored_token_goes_only_to_the_server_that_issued_it(home, monkeypatch):
    config.save(url="http://vintner:8000", token="abc", username="alice")
    assert config.resolve("vintner:8000/").token == "abc"  # the same server, spelt differently
    assert config.resolve("http://elsewhere:8000").token is None
    monkeypatch.setenv("VINTNER_URL", "http://elsewhere:8000")
    assert config.resolve() == config.Settings("http://elsewhere:8000", None)
    monkeypatch.setenv("VINTNER_TOKEN", "xyz")  # said explicitly: used with whichever server
    assert config.resolve().token == "xyz"
    assert config.resolve("http://third:1").url == "http://third:1"  # the flag beats the environment


def test_a_server_address_must_be_http(home):
    with pytest.raises(config.ConfigError, match="not a server address"):
        config.resolve("ftp://vintner")


@pytest.mark.parametrize("payload, text", [
    ({"detail": "Not found."}, "Not found."),
    ({"non_field_errors": ["Unable to log in with provided credentials."]}, "Unable to log in with provided credentials."),
    ({"params.rounds": ["Ensure this value is greater than or equal to 1."], "name": ["This field is required"]},
     "params.rounds: Ensure this value is greater than or equal to 1. name: This field is required."),
    (["This artifact is not ready to download."], "This artifact is not ready to download."),
])
def test_the_apis_errors_read_as_sentences(payload, text):
    assert error_text(payload) == text


@pytest.mark.parametrize("value, parsed", [
    ("3", 3), ("0.2", 0.2), ("true", True), ('["latency"]', ["latency"]), ("null", None),
    ("resnet18", "resnet18"), ("007", "007"), ("", ""),
])
def test_parameters_are_json_when_they_parse(value, parsed):
    assert param_value(value) == parsed


def test_a_dataset_upload_may_say_whether_the_archive_has_labels(capsys):
    upload = ["datasets", "upload", "3", "photos.zip", "--name", "photos"]
    assert build_parser().parse_args(upload).labelling == "auto"  # the archive decides
    assert build_parser().parse_args([*upload, "--labelling", "unlabelled"]).labelling == "unlabelled"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*upload, "--labelling", "sometimes"])
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_sizes_and_file_names():
    assert parse_size("32M") == 32 * 2**20 and parse_size("64k") == 65536 and parse_size("1MiB") == 2**20
    with pytest.raises(ValueError):
        parse_size("lots")
    assert attachment_name('attachment; filename="tiny-onnx-fp32-3.onnx"') == "tiny-onnx-fp32-3.onnx"
    assert attachment_name("attachment; filename*=utf-8''mod%C3%A8le.zip") == "modèle.zip"
    assert attachment_name('attachment; filename="../../etc/passwd"') == "passwd"  # never a path
    assert attachment_name("inline") is None


def test_it_is_a_pure_client_that_never_imports_the_server():
    import subprocess
    import sys

    server = {"django", "rest_framework", "channels", "webapp", "workers"}
    probe = ("import sys, vintner_cli.main, vintner_cli.follow, vintner_cli.upload; "
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {server!r}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"}, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
