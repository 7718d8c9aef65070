"""Start the whole product on one box: Redis (unless REDIS_URL points elsewhere), daphne and a
Celery worker on both queues (one per GPU, each pinned to its own, where the box has GPUs:
workers/gpus.py). Ctrl-C stops them all."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from webapp.core.management.commands.ensure_admin import admin_ensure, admin_lines, framed
from workers.gpus import host_gpus, plan


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class Command(BaseCommand):
    help = "Run Vintner on this machine: Redis, web (daphne) and a worker on the train and optimize queues."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("VINTNER_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("VINTNER_PORT", "8000")))

    def handle(self, *args, host: str, port: int, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        created = admin_ensure()
        children: list[subprocess.Popen] = []
        redis_url = settings.REDIS_URL
        redis_server = None if _redis_answers(redis_url) else self._start_redis(redis_url)
        python = sys.executable
        children.append(subprocess.Popen([python, "-m", "daphne", "-b", host, "-p", str(port), "webapp.asgi:application"]))
        workers = plan(["-Q", "train,optimize", "-c", "1", "--hostname", "local@%h", "--loglevel", "INFO"], host_gpus())
        children += [subprocess.Popen([python, "-m", *worker.argv], env=worker.environment()) for worker in workers]
        self.stdout.write(self.style.SUCCESS(f"Vintner is starting at http://{host}:{port}/  (Ctrl-C stops everything)"))

        def announce() -> None:
            # The address and a generated password go last, framed, once the web server and the
            # worker have said what they say on starting: a newcomer finds them without scrolling.
            ready = self._started(children, host, port)
            lines = [f"Vintner is {'running' if ready else 'starting'} at http://{host}:{port}/  (Ctrl-C stops everything)"]
            self.stdout.write(self.style.SUCCESS(framed(lines + (admin_lines(created) if created else []))))
            self.stdout.flush()

        self._wait(children, redis_server, announce)

    def _started(self, children: list[subprocess.Popen], host: str, port: int, timeout: float = 90) -> bool:
        """Whether the web server answers and the worker replies to a ping within `timeout` seconds."""
        from webapp.celery import app

        deadline = time.monotonic() + timeout
        web = worker = False
        while time.monotonic() < deadline and all(child.poll() is None for child in children):
            if not web:
                with socket.socket() as probe:
                    probe.settimeout(0.5)
                    web = probe.connect_ex((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port)) == 0
            if web and not worker:
                try:
                    worker = bool(app.control.ping(timeout=1))
                except Exception:  # the broker not answering yet is the same as no reply
                    worker = False
            if web and worker:
                return True
            time.sleep(0.3)
        return False

    def _start_redis(self, url: str) -> subprocess.Popen:
        server = shutil.which("redis-server")
        parsed = urlparse(url)
        if not server or parsed.hostname not in {"127.0.0.1", "localhost"}:
            raise CommandError(f"No Redis answers at {url}. Install one (apt-get install redis-server) or set REDIS_URL.")
        data_dir = settings.DATA_DIR / "redis"
        data_dir.mkdir(exist_ok=True)
        process = subprocess.Popen(
            [server, "--port", str(parsed.port or 6379), "--bind", "127.0.0.1", "--dir", str(data_dir),
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # not hit by the terminal's Ctrl-C: we stop it last, ourselves
        )
        for _ in range(50):
            if _redis_answers(url):
                return process
            time.sleep(0.1)
        process.terminate()
        raise CommandError(f"Redis did not start on {url}.")

    def _wait(self, children: list[subprocess.Popen], redis_server: subprocess.Popen | None, announce) -> None:
        def stop(*_):
            raise KeyboardInterrupt

        # SIGINT too, explicitly: a process started with SIGINT ignored (`cmd &` in a script) would
        # otherwise never stop on it.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        everything = children + ([redis_server] if redis_server else [])
        crashed = False
        try:
            announce()
            while all(child.poll() is None for child in everything):
                time.sleep(0.5)
            crashed = True
            self.stderr.write("A Vintner process exited; stopping the others.")
        except KeyboardInterrupt:
            self.stdout.write("Stopping Vintner…")
        finally:
            # Web and worker first; Redis only once they are gone, as a worker's warm shutdown
            # still acknowledges its task and reports progress through it.
            for group in (children, [redis_server] if redis_server else []):
                for child in group:
                    if child.poll() is None:
                        child.send_signal(signal.SIGTERM)
                for child in group:
                    try:
                        child.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
        if crashed:
            raise CommandError("A Vintner process exited; everything was stopped.")  # non-zero, for supervisors
