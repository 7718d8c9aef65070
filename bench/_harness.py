"""What every benchmark here needs: the project's virtualenv, a private data folder with a
fresh migrated SQLite database, a private Redis, daphne processes, CPU accounting and
percentiles. Everything started here is stopped by `Stack.close()` (use it as a context manager).

Import it first thing (before Django): `from _harness import Stack` re-executes the script with
.venv/bin/python when it was started with another interpreter.
"""

import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def _ensure_venv() -> None:
    """Run under the project's virtualenv, whatever interpreter started us."""
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    if not VENV_PYTHON.exists():
        sys.exit(f"{VENV_PYTHON} is missing: run `make test` (or `make run`) once to create the virtualenv.")
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), sys.argv[0], *sys.argv[1:]])


_ensure_venv()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import ServiceProcess, free_port, wait_for  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one when pid is None)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes of this machine have used (all cores, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4] if len(fields) > 4 else 0
    return (sum(fields[:8]) - idle - iowait) / CLOCK_TICKS


def spread(values: list[float]) -> float:
    """(largest − smallest) / median of a figure's rounds: how much the machine moved it (over 0.10: noisy)."""
    middle = statistics.median(values)
    return round((max(values) - min(values)) / middle, 3) if middle else 0.0


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class Stack:
    """A private Vintner for one benchmark run: data folder, SQLite, Redis; daphne on demand."""

    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.data_dir = Path(tempfile.mkdtemp(prefix="vintner-bench-"))
        self.log_dir = self.data_dir / "logs"
        self.log_dir.mkdir()
        self.redis: subprocess.Popen | None = None
        self.services: list[ServiceProcess] = []
        self.env: dict[str, str] = {}

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "Stack":
        try:
            self._start_redis()
            self.env = {
                **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "VINTNER_PRODUCTION", "DEBUG"}},
                "DJANGO_SETTINGS_MODULE": "webapp.settings",
                "VINTNER_DATA_DIR": str(self.data_dir),
                "DATABASE_URL": f"sqlite:///{self.data_dir / 'vintner.sqlite3'}",
                "REDIS_URL": self.redis_url,
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
            # This process uses the same settings as the servers it starts.
            os.environ.update(self.env)
            for name in ("VINTNER_PRODUCTION", "DEBUG"):
                os.environ.pop(name, None)
            self._migrate()
            import django

            django.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        if self.redis and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait(timeout=10)
        self.redis = None
        if self.keep:
            print(f"kept {self.data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # --- pieces ---------------------------------------------------------------------------------
    def _start_redis(self) -> None:
        """Configured as `manage.py up` runs it: AOF on, fsync every second."""
        server = shutil.which("redis-server")
        if not server:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it.")
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir()
        self.redis = subprocess.Popen(
            [server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(redis_dir),
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        import redis

        def answers() -> bool:
            if self.redis.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            try:
                return bool(redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5).ping())
            except redis.RedisError:
                return False

        wait_for(answers, timeout=10, what="redis-server to start")

    def _migrate(self) -> None:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                       cwd=ROOT, env=self.env, check=True)

    def start_daphne(self, application: str = "webapp.asgi:application") -> tuple[ServiceProcess, int]:
        """daphne serving `application` on a free port; stopped by close() or stop_service()."""
        port = free_port()
        args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), application]
        server = ServiceProcess(f"daphne-{port}", args, self.env, self.log_dir)
        self.services.append(server)
        import socket

        def up() -> bool:
            if not server.alive():
                raise RuntimeError(f"daphne exited:\n{server.log()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(up, timeout=60, what="daphne to listen")
        return server, port

    def stop_service(self, service: ServiceProcess) -> None:
        service.stop()
        self.services.remove(service)


def pace(start: float, index: int, rate: float) -> None:
    """Sleep until the index-th tick of a `rate`-per-second schedule that began at `start`
    (time.monotonic()); the schedule is absolute, so a late tick does not push the next ones."""
    delay = start + index / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
