"""Vintner on several hosts, started on one machine: a throwaway Postgres cluster, a real S3
server (SeaweedFS), Redis, daphne, and workers that each have their own data folder and share
nothing but the database, Redis and the bucket. Used by tests/test_hosts.py and bench/hosts.py."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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

    def dump(self) -> str:
        """The database's rows as text, to look for what should not be in them."""
        return subprocess.run([_pg_bin("pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "vintner",
                               "--data-only", "vintner"], check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        try:
            self.ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class Hosts:
    """The shared services, and hosts (web, workers) started with their own data folders."""

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root, self.log_dir = root, log_dir
        self.postgres = PostgresServer().start()
        self.s3 = S3Server(root, log_dir).start()
        self.redis = RedisServer(root / "shared").start()
        self.data_dirs: list[Path] = []

    def env(self, host: str) -> dict[str, str]:
        data = self.root / host
        data.mkdir(parents=True, exist_ok=True)
        self.data_dirs.append(data)
        env = {key: value for key, value in os.environ.items() if key not in ("VINTNER_DATA_DIR", "MEDIA_ROOT")}
        env.update(self.s3.env(), DJANGO_SETTINGS_MODULE="webapp.settings", DATABASE_URL=self.postgres.url,
                   REDIS_URL=self.redis.url, VINTNER_DATA_DIR=str(data), PYTHONUNBUFFERED="1")
        return env

    def manage(self, *args: str) -> str:
        return subprocess.run([sys.executable, "manage.py", *args], env=self.env("admin"), check=True,
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent).stdout

    def web(self) -> str:
        self.daphne, url = start_daphne(self.env("web"), self.log_dir)
        return url

    def worker(self, host: str, queue: str, concurrency: int = 1) -> ServiceProcess:
        args = [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", queue, "-c", str(concurrency),
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
