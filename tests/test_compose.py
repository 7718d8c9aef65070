"""docker-compose.yml and the Dockerfile against the code they start.

No Docker needed: the files are parsed, and every program, app, queue, management command and
environment variable they name is looked up in the project itself.
"""

import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from django.core.management import get_commands

from tests.servers import ServiceProcess, free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SETTINGS_SOURCE = (ROOT / "webapp" / "settings.py").read_text()

ASGI_TARGET = "webapp.asgi:application"
EXPECTED_SERVICES = {"web", "worker-train", "worker-optimize", "redis", "postgres", "minio"}


# --- helpers ----------------------------------------------------------------------------------


def vintner_services() -> dict[str, dict]:
    """Services that run the project's own image (the `x-vintner` anchor)."""
    image = COMPOSE["x-vintner"]["image"]
    return {name: svc for name, svc in SERVICES.items() if svc.get("image") == image}


def argvs(command) -> list[list[str]]:
    """The programs a compose `command` runs: itself, or each `&&` step of a `sh -c` script."""
    argv = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    if argv[:2] == ["sh", "-c"] and len(argv) == 3:
        return [shlex.split(step) for step in argv[2].split("&&")]
    return [argv]


def option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in names:
            return argv[i + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def celery_argv(argv: list[str]) -> list[str] | None:
    """The `celery … worker` a command runs: itself, or what the GPU launcher starts on a host
    without a GPU (on one with GPUs, the same per GPU with its own name and GPU: tests/test_gpus.py)."""
    if argv[:3] == ["python", "-m", "workers.gpus"]:
        from workers.gpus import parse, plan

        options, args = parse([re.sub(r"\$\{\w+:-(\w+)\}", r"\1", arg) for arg in argv[3:]])  # compose's default
        (worker,) = plan(args, [], options.gpus_per_worker)
        return list(worker.argv)
    return argv if argv[0] == "celery" else None


def one_shot_services() -> set[str]:
    """Services something waits on to *finish* (migrations, bucket creation)."""
    return {
        dep
        for svc in SERVICES.values()
        for dep, spec in (svc.get("depends_on") or {}).items()
        if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"
    }


def healthcheck_text(svc: dict) -> str:
    test = svc["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def management_command_source(name: str) -> str:
    app = get_commands()[name]
    module = "django.core" if app == "django.core" else app
    return inspect.getsource(importlib.import_module(f"{module}.management.commands.{name}"))


def dockerfile_cmd() -> list[str]:
    lines = [line for line in DOCKERFILE.splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, "the Dockerfile should have exactly one CMD"
    return json.loads(lines[0][len("CMD ") :])


# --- tests ------------------------------------------------------------------------------------


def test_it_has_the_expected_services():
    assert EXPECTED_SERVICES <= set(SERVICES)
    assert {"web", "worker-train", "worker-optimize"} <= set(vintner_services())


def test_it_shares_one_definition_for_the_django_services():
    anchor = COMPOSE["x-vintner"]
    assert anchor["build"]["context"] == "."
    for name, svc in vintner_services().items():
        assert svc["build"] == anchor["build"], name
        assert "vintner-data:/data" in svc["volumes"], name
        env = svc["environment"]
        assert env["VINTNER_PRODUCTION"] == "1", name
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), f"{name}: SECRET_KEY must be required"


def test_it_runs_only_known_programs_in_the_vintner_image():
    for name, svc in vintner_services().items():
        assert svc.get("command"), f"{name} has no command"
        for argv in argvs(svc["command"]):
            assert argv[0] in {"daphne", "celery"} or argv[:2] == ["python", "manage.py"] \
                or argv[:3] == ["python", "-m", "workers.gpus"], (name, argv)


def test_it_serves_an_asgi_app_that_exists():
    targets = [
        argv[-1] for svc in vintner_services().values() for argv in argvs(svc["command"]) if argv[0] == "daphne"
    ]
    assert targets == [ASGI_TARGET], "exactly one daphne service, serving the project's ASGI app"
    module, attr = ASGI_TARGET.split(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_it_uses_the_same_asgi_app_as_the_dockerfile():
    cmd = dockerfile_cmd()
    assert cmd[0] == "daphne" and cmd[-1] == ASGI_TARGET
    assert option(cmd, "-p", "--port") == "8000"
    assert re.search(r"^EXPOSE 8000$", DOCKERFILE, re.M)


def test_it_starts_celery_on_the_project_app_and_its_queues():
    from webapp.celery import app as project_app

    queue_names = {queue.name for queue in project_app.conf.task_queues}
    workers = {
        name: celery_argv(argv)
        for name, svc in vintner_services().items()
        for argv in argvs(svc["command"])
        if celery_argv(argv)
    }
    assert set(workers) == {"worker-train", "worker-optimize"}
    for name, argv in workers.items():
        app_name = option(argv, "-A", "--app")
        app = find_app(app_name)  # what `celery -A` does
        assert isinstance(app, Celery) and app is project_app, name
        assert argv[argv.index(app_name) + 1] == "worker", name
        queues = set(option(argv, "-Q", "--queues").split(","))
        assert queues and queues <= queue_names, (name, queues, queue_names)
    assert option(workers["worker-train"], "-Q", "--queues") == "train"
    assert option(workers["worker-optimize"], "-Q", "--queues") == "optimize"


def test_it_health_checks_each_worker_under_its_own_node_name():
    train = SERVICES["worker-train"]
    # the launcher's health check pings every worker it would start, from the same options
    assert train["healthcheck"]["test"][1:4] == ["python", "-m", "workers.gpus"] and "--ping" in train["healthcheck"]["test"]
    assert [arg for arg in train["healthcheck"]["test"][4:] if arg != "--ping"] == \
        [arg for arg in argvs(train["command"])[0][3:] if arg not in ("--loglevel", "INFO")]
    for name in ("worker-optimize",):
        svc = SERVICES[name]
        (argv,) = argvs(svc["command"])
        prefix = option(argv, "--hostname", "-n").split("@")[0]
        check = healthcheck_text(svc)
        assert "inspect ping" in check, name
        # `$$` is compose's escape for a literal `$`; %h is the container's hostname, $HOSTNAME in a shell.
        assert f"{prefix}@$$HOSTNAME" in check, (name, check)


def test_it_runs_real_management_commands():
    commands = get_commands()
    seen = set()
    for name, svc in vintner_services().items():
        for argv in argvs(svc["command"]):
            if argv[:2] == ["python", "manage.py"]:
                assert argv[2] in commands, f"{name}: no management command {argv[2]!r}"
                seen.add(argv[2])
    assert {"migrate", "ensure_admin"} <= seen


def test_it_sets_only_environment_the_code_reads():
    for name, svc in vintner_services().items():
        commands = [argv[2] for argv in argvs(svc["command"]) if argv[:2] == ["python", "manage.py"]]
        sources = [SETTINGS_SOURCE] + [management_command_source(command) for command in commands]
        for var in svc["environment"]:
            assert any(re.search(rf"[\"']{re.escape(var)}[\"']", source) for source in sources), (
                f"{name} sets {var}, which neither webapp/settings.py nor its commands read"
            )
    for var in re.findall(r"\b(VINTNER_\w+)=", DOCKERFILE):
        assert f'"{var}"' in SETTINGS_SOURCE, f"the Dockerfile sets {var}, which webapp/settings.py does not read"


def test_it_wires_storage_to_minio():
    env = COMPOSE["x-vintner"]["environment"]
    assert env["STORAGE_BACKEND"] == "s3"
    assert "minio:9000" in env["S3_ENDPOINT_URL"]
    for name in ("web", "worker-train", "worker-optimize"):
        assert SERVICES[name]["environment"]["STORAGE_BACKEND"] == "s3"


def test_it_health_checks_every_long_running_service():
    one_shots = one_shot_services()
    for name, svc in SERVICES.items():
        if name in one_shots:
            assert svc.get("restart") == "no", f"{name} runs once and must not be restarted"
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert not svc["healthcheck"].get("disable"), name
    assert "redis-cli ping" in healthcheck_text(SERVICES["redis"])
    assert "pg_isready" in healthcheck_text(SERVICES["postgres"])
    assert "/healthz" in healthcheck_text(SERVICES["web"])


def test_it_depends_only_on_services_that_exist_and_can_satisfy_the_condition():
    one_shots = one_shot_services()
    for name, svc in SERVICES.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert SERVICES[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy, it has no check"
            else:
                assert condition == "service_completed_successfully" and dep in one_shots, (name, dep)
    web_deps = SERVICES["web"]["depends_on"]
    assert web_deps["postgres"]["condition"] == "service_healthy"
    assert web_deps["redis"]["condition"] == "service_healthy"
    migrate_steps = [
        argv[2]
        for dep in web_deps
        for argv in argvs(SERVICES[dep].get("command") or ["-"])
        if argv[:2] == ["python", "manage.py"]
    ]
    assert "migrate" in migrate_steps, "web must wait for the migrations"


def test_it_reserves_gpus_for_the_train_worker_only():
    def gpu_devices(svc):
        devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
        return [device for device in devices if "gpu" in device.get("capabilities", [])]

    (device,) = gpu_devices(SERVICES["worker-train"])
    # every GPU of the host, which the launcher gives out one (or a group) to each worker
    assert device["driver"] == "nvidia" and device["count"] == "all" and "device_ids" not in device
    assert argvs(SERVICES["worker-train"]["command"])[0][:3] == ["python", "-m", "workers.gpus"]
    assert [name for name, svc in SERVICES.items() if gpu_devices(svc)] == ["worker-train"]


def test_workers_get_time_to_land_a_checkpoint_when_stopped():
    for name in ("worker-train", "worker-optimize"):
        grace = SERVICES[name]["stop_grace_period"]
        assert re.fullmatch(r"\$\{\w+:-\d+m\}", grace), f"{name} stops after Docker's 10 s default"


def test_the_app_uses_its_own_storage_key_not_minios_root():
    env = COMPOSE["x-vintner"]["environment"]
    assert "MINIO_ROOT" not in env["S3_ACCESS_KEY"] + env["S3_SECRET_KEY"]
    script = SERVICES["minio-init"]["command"][0]
    assert 'mc admin user add vintner "$$S3_ACCESS_KEY" "$$S3_SECRET_KEY"' in script
    assert "arn:aws:s3:::%s/*" in script  # the key's policy names the bucket only
    assert "minio-init" in SERVICES["web"]["depends_on"] and SERVICES["minio"]["healthcheck"]["test"]


def test_it_uses_named_volumes():
    declared = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert source in declared, f"{name} mounts {source!r}, not a named volume"


def test_it_builds_a_production_image():
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", DOCKERFILE, re.M)
    assert "pip install --no-cache-dir -r requirements.txt" in DOCKERFILE
    assert re.search(r"^USER vintner$", DOCKERFILE, re.M)
    assert "VINTNER_DATA_DIR=/data" in DOCKERFILE
    # Production uses CompressedManifestStaticFilesStorage, whose manifest only a production
    # collectstatic writes; without it every {% static %} fails.
    (collect,) = [line for line in DOCKERFILE.splitlines() if line.startswith("RUN") and "collectstatic" in line]
    assert "VINTNER_PRODUCTION=1" in collect and "SECRET_KEY=" in collect
    assert not re.search(r"^ENV\b.*\b(SECRET_KEY|VINTNER_PRODUCTION)=", DOCKERFILE, re.M)


@pytest.mark.integration
def test_it_web_healthcheck_passes_against_a_production_daphne(tmp_path):
    """The web healthcheck, run as written, against daphne with VINTNER_PRODUCTION=1: plain HTTP
    from inside the container must neither be redirected to HTTPS nor refused for its Host."""
    test = SERVICES["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    (argv,) = argvs(SERVICES["web"]["command"])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL", "STORAGE_BACKEND"}}
    env.update(
        VINTNER_PRODUCTION="1",
        SECRET_KEY="test-only-secret-key-" + "x" * 40,
        ALLOWED_HOSTS="vintner.example.com,.example.org",
        VINTNER_DATA_DIR=str(tmp_path / "data"),
        DJANGO_SETTINGS_MODULE="webapp.settings",
        PYTHONUNBUFFERED="1",
    )
    args = [sys.executable, "-m", *argv]
    args[args.index("-b") + 1] = "127.0.0.1"
    args[args.index("-p") + 1] = str(port)
    server = ServiceProcess(f"daphne-compose-{port}", args, env, tmp_path)
    try:
        wait_listening(server, port)
        code = test[3].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        assert code != test[3]
        check = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"{check.stderr}\n--- daphne log ---\n{server.log()}"
    finally:
        server.stop()
