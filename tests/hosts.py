"""Vintner on several hosts, started on one machine: a throwaway Postgres cluster, a real S3
server (SeaweedFS), Redis, daphne, and workers that each have their own data folder and share
nothing but the database, Redis and the bucket. Used by tests/test_hosts.py and bench/hosts.py."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import psycopg

from tests.archive_builders import colour_classes, make_zip
from tests.servers import RedisServer, S3Server, ServiceProcess, free_port, start_daphne, wait_for

PG_USER = "postgres"  # Debian's system user: the server refuses to run as root


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/ensure-system-packages (Debian's postgresql).")
    return str(found)


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *args] if os.geteuid() == 0 else args


class PostgresServer:
    """A cluster in its own temp folder on a free port, trusting local connections; gone on stop."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="vintner-pg-"))
        self.port = free_port()
        self.url = f"postgres://vintner@127.0.0.1:{self.port}/vintner"

    def start(self) -> "PostgresServer":
        if os.geteuid() == 0:
            shutil.chown(self.folder, PG_USER, PG_USER)
        data = self.folder / "data"
        subprocess.run(_as_owner([_pg_bin("initdb"), "-D", str(data), "-U", "vintner", "-A", "trust", "-E", "UTF8",
                                  "--no-sync"]), check=True, capture_output=True)
        self.ctl("start", "-w", "-t", "60", "-l", str(self.folder / "log"),
                 "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off")
        subprocess.run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "vintner", "-d", "postgres",
                        "-c", "CREATE DATABASE vintner"], check=True, capture_output=True)
        return self

    def ctl(self, *args: str) -> None:
        subprocess.run(_as_owner([_pg_bin("pg_ctl"), "-D", str(self.folder / "data"), *args]), check=True,
                       capture_output=True)

    def restart(self) -> None:
        """Stopped (its clients cut off) and started again, as in an upgrade or a failover."""
        self.ctl("restart", "-w", "-t", "60", "-m", "fast", "-l", str(self.folder / "log"))

    def dump(self) -> str:
        """The database's rows as text, to look for what should not be in them."""
        return subprocess.run([_pg_bin("pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "vintner",
                               "--data-only", "vintner"], check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        try:
            self.ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


# Run as `sh -c HOST_DISK sh ROOT DATA COMMAND...` in a new mount namespace: the tier's folder
# becomes an empty tmpfs holding only DATA (bound back from where it was), then COMMAND runs.
HOST_DISK = """
set -e
root=$1 data=$2
shift 2
keep=$(mktemp -d -p /tmp)  # not under TMPDIR: that is in the data folder
mount --bind "$data" "$keep"
mount -t tmpfs -o mode=755 vintner-host "$root"
mkdir -p "$data"
mount --move "$keep" "$data"
rmdir "$keep"
exec "$@"
"""


def own_disk(root: Path, data: Path) -> list[str]:
    """The command prefix that gives a host a disk of its own: in its mount namespace the tier's
    folder holds its data folder and nothing else, so another host's files, the database's and the
    bucket's cannot be read by path, as on separate machines. It needs root (as the tier's Postgres
    does); elsewhere the hosts share the folder and shared_paths() is the only check."""
    if os.geteuid() != 0:
        return []
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", HOST_DISK, "sh", str(root), str(data)]


class Hosts:
    """The shared services, and hosts (web, workers) started each with a data folder that only it
    can see (own_disk)."""

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root, self.log_dir = root, log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresServer().start()
        self.s3 = S3Server(root, log_dir).start()
        self.redis = RedisServer(root / "shared").start()
        self.data_dirs: list[Path] = []

    def env(self, host: str) -> dict[str, str]:
        data = self.root / host
        data.mkdir(parents=True, exist_ok=True)
        self.data_dirs.append(data)
        env = {key: value for key, value in os.environ.items() if key not in ("VINTNER_DATA_DIR", "MEDIA_ROOT")}
        (data / "tmp").mkdir(exist_ok=True)
        env.update(self.s3.env(), DJANGO_SETTINGS_MODULE="webapp.settings", DATABASE_URL=self.postgres.url,
                   REDIS_URL=self.redis.url, VINTNER_DATA_DIR=str(data), PYTHONUNBUFFERED="1",
                   TMPDIR=str(data / "tmp"))  # scratch on the host's own disk too
        return env

    def own_disk(self, host: str) -> list[str]:
        return own_disk(self.root, self.root / host)

    def manage(self, *args: str) -> str:
        done = subprocess.run([*self.own_disk("admin"), sys.executable, "manage.py", *args], env=self.env("admin"),
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def ready(self) -> "Hosts":
        """Migrated, with alice's project, and the web host up."""
        self.manage("migrate", "--noinput")
        self.project = int(self.manage("shell", "-c", SETUP).split()[-1])
        self.url = self.web()
        return self

    def web(self) -> str:
        self.daphne, url = start_daphne(self.env("web"), self.log_dir, prefix=self.own_disk("web"))
        return url

    def worker(self, host: str, queue: str, concurrency: int = 1) -> ServiceProcess:
        args = [*self.own_disk(host), sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", queue,
                "-c", str(concurrency),
                "--hostname", f"{host}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        worker = ServiceProcess(f"worker-{host}-{self.redis.port}", args, self.env(host), self.log_dir)
        wait_for(lambda: worker.alive() and "ready." in worker.log(), timeout=120, what=f"worker {host} to start",
                 interval=0.3)
        return worker

    def stop(self) -> None:
        for stop in (getattr(getattr(self, "daphne", None), "stop", None), self.redis.stop, self.s3.stop,
                     self.postgres.stop):
            if stop:
                try:
                    stop()
                except Exception:  # the others still stop
                    pass


# --- the journey (tests/test_hosts.py, bench/hosts.py) ----------------------------------------

PASSWORD = "correct horse battery staple"
SETUP = f"""
from django.contrib.auth import get_user_model
from webapp.projects.models import Project
from webapp.teams.models import Membership, Role, Team
alice = get_user_model().objects.create_user("alice", password={PASSWORD!r})
team = Team.objects.create(name="Vision")
Membership.objects.create(team=team, user=alice, role=Role.OWNER)
print(Project.objects.create(team=team, name="Grapes").id)
"""


VINTNER = Path(sys.executable).with_name("vintner")  # what `make` installs (pip install -e .)


def cli_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("VINTNER_URL", "VINTNER_TOKEN", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def cli(home: Path, *args) -> dict:
    done = subprocess.run([str(VINTNER), *map(str, args)], env=cli_env(home), cwd=home, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else {}


def row(hosts: Hosts, sql: str, *params):
    with psycopg.connect(hosts.postgres.url.replace("postgres://", "postgresql://")) as db:
        return db.execute(sql, params).fetchone()


def rows(hosts: Hosts, sql: str, *params) -> list:
    with psycopg.connect(hosts.postgres.url.replace("postgres://", "postgresql://")) as db:
        return db.execute(sql, params).fetchall()


def job_where(hosts: Hosts, job_id: int, condition: str, timeout: float = 180):
    return wait_for(lambda: row(hosts, f"SELECT state, attempts, result, error FROM jobs_job WHERE id = %s AND {condition}",
                                job_id), timeout=timeout, what=f"job {job_id}: {condition}", interval=0.3)


def succeeded(hosts: Hosts, job_id: int, timeout: float = 240) -> dict:
    state, attempts, result, error = job_where(hosts, job_id, "state IN ('succeeded', 'failed', 'cancelled')", timeout)
    assert state == "succeeded", error
    return {**result, "attempts": attempts}


def journey(hosts: "Hosts", tmp_path: Path) -> dict:
    """A user's journey through the command line, each worker killed once in the middle of a job
    and replaced by another host; returns what it made."""
    home = tmp_path / "home"
    home.mkdir(parents=True)
    done = subprocess.run([str(VINTNER), "login", "--url", hosts.url, "--username", "alice", "--password-stdin"],
                          env=cli_env(home), cwd=home, input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    train = hosts.worker("train-a", "train")
    optimize = hosts.worker("optimize-a", "optimize", concurrency=2)

    archive = make_zip(tmp_path / "colours.zip", colour_classes())
    dataset = cli(home, "datasets", "upload", hosts.project, archive, "--name", "colours", "--no-follow", "--json")["id"]
    wait_for(lambda: row(hosts, "SELECT 1 FROM datasets_dataset WHERE id = %s AND imported_at IS NOT NULL", dataset),
             timeout=120, what="the dataset import", interval=0.3)

    # training: its worker is killed after an epoch's checkpoint; another GPU host goes on from it
    job = cli(home, "jobs", "submit", "train", "--project", hosts.project, "--dataset", dataset, "--no-follow", "--json",
              "-p", "model_name=colours", "-p", "architecture=small_cnn", "-p", "input_size=16", "-p", "batch_size=8",
              "-p", "workers=0", "-p", "lr=0.01", "-p", "augment=none", "-p", "epochs=4",
              "-p", "checkpoint_minutes=0")["id"]  # a checkpoint after every epoch
    job_where(hosts, job, "checkpoint IS NOT NULL")
    train.stop(signal.SIGKILL)
    train = hosts.worker("train-b", "train")
    trained = succeeded(hosts, job)
    assert trained["attempts"] == 2
    fp32 = trained["artifact"]

    # two jobs at once on the optimize host, which is killed while both run; the next one does both
    convert = cli(home, "jobs", "submit", "convert", "--artifact", fp32, "--no-follow", "--json")["id"]
    measure = cli(home, "jobs", "submit", "benchmark", "--artifact", fp32, "--no-follow", "--json", "-p", "seconds=1")["id"]
    job_where(hosts, convert, "state = 'running'")
    job_where(hosts, measure, "state = 'running'")
    optimize.stop(signal.SIGKILL)
    optimize = hosts.worker("optimize-b", "optimize", concurrency=2)
    ir = succeeded(hosts, convert)["artifact"]
    assert succeeded(hosts, measure)["attempts"] == 2

    # the database restarts while a quantization runs: it ends once, with one artifact
    quantize = cli(home, "jobs", "submit", "quantize", "--artifact", ir, "--dataset", dataset, "--no-follow", "--json",
                   "-p", "method=ptq")["id"]
    job_where(hosts, quantize, "state = 'running'")
    hosts.postgres.restart()
    int8 = succeeded(hosts, quantize)["artifact"]
    assert rows(hosts, "SELECT id FROM registry_artifact WHERE job_id = %s", quantize) == [(int8,)]
    succeeded(hosts, cli(home, "jobs", "submit", "benchmark", "--artifact", int8, "--no-follow", "--json",
                         "-p", "seconds=1")["id"])

    # the download streams from the bucket through the web host, checksums and all
    folder = tmp_path / "download"
    folder.mkdir()
    cli(home, "artifacts", "download", int8, "-o", folder)
    (bundle,) = folder.glob("*.zip")
    with zipfile.ZipFile(bundle) as zipped:
        sums = dict(reversed(line.split("  ", 1)) for line in zipped.read("SHA256SUMS").decode().splitlines())
        assert {name: hashlib.sha256(zipped.read(name)).hexdigest() for name in sums} == sums
    train.stop()
    optimize.stop()
    return {"dataset": dataset, "artifacts": [fp32, ir, int8], "train_attempts": trained["attempts"]}



def storage_mismatches(hosts: "Hosts") -> list[str]:
    """Objects in the bucket no row names, objects a row names that are missing, and objects whose
    checksum is not the one their row records."""
    client = hosts.s3.client()
    objects = {o["Key"]: o for page in client.get_paginator("list_objects_v2").paginate(Bucket=hosts.s3.BUCKET)
               for o in page.get("Contents", [])}
    named = {}
    for artifact_id, listing in rows(hosts, "SELECT id, files FROM registry_artifact WHERE ready_at IS NOT NULL"):
        for entry in listing:
            named[f"artifacts/{artifact_id}/{entry['name']}"] = entry["sha256"]
    for dataset_id, path, thumb in rows(hosts, "SELECT dataset_id, path, thumb FROM datasets_datasetitem"):
        named[f"datasets/{dataset_id}/images/{path}"] = named[f"datasets/{dataset_id}/{thumb}"] = None
    for (upload_id,) in rows(hosts, "SELECT id FROM uploads_upload WHERE completed_at IS NOT NULL"):
        named[f"uploads/{upload_id}"] = None
    imported = {f"datasets/{i}/" for (i,) in rows(hosts, "SELECT id FROM datasets_dataset WHERE imported_at IS NOT NULL")}
    # a dataset's own index files are its row's too
    unnamed = [key for key in objects if key not in named and not any(key.startswith(p) for p in imported)]
    wrong = [f"unnamed: {key}" for key in unnamed] + [f"missing: {key}" for key in named if key not in objects]
    for key, digest in named.items():
        if digest and key in objects:
            body = client.get_object(Bucket=hosts.s3.BUCKET, Key=key)["Body"]
            hasher = hashlib.sha256()
            for block in iter(lambda: body.read(2**20), b""):
                hasher.update(block)
            if hasher.hexdigest() != digest:
                wrong.append(f"checksum: {key}")
    return wrong


def shared_paths(hosts: "Hosts") -> list[str]:
    """The database's lines that name a host's local data folder: paths must not cross hosts."""
    return [line[:400] for line in hosts.postgres.dump().splitlines()
            if any(str(data) in line for data in hosts.data_dirs)]
