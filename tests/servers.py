"""Real processes for tests: a private Redis, daphne and Celery workers, on free local ports."""

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


def start_daphne(env: dict[str, str], log_dir: Path) -> tuple[ServiceProcess, str]:
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "webapp.asgi:application"]
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
