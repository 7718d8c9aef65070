"""Start the whole product on one box: Redis (unless REDIS_URL points elsewhere), daphne and one
Celery worker on both queues. Ctrl-C stops them all."""

import os
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


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
        call_command("ensure_admin")
        children: list[subprocess.Popen] = []
        redis_url = settings.REDIS_URL
        redis_server = None if _redis_answers(redis_url) else self._start_redis(redis_url)
        python = sys.executable
        children.append(subprocess.Popen([python, "-m", "daphne", "-b", host, "-p", str(port), "webapp.asgi:application"]))
        children.append(
            subprocess.Popen(
                [python, "-m", "celery", "-A", "webapp", "worker", "-Q", "train,optimize", "-c", "1",
                 "--hostname", "local@%h", "--loglevel", "INFO"]
            )
        )
        self.stdout.write(self.style.SUCCESS(f"Vintner is starting at http://{host}:{port}/  (Ctrl-C stops everything)"))
        self._wait(children, redis_server)

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

    def _wait(self, children: list[subprocess.Popen], redis_server: subprocess.Popen | None) -> None:
        def stop(*_):
            raise KeyboardInterrupt

        # SIGINT too, explicitly: a process started with SIGINT ignored (`cmd &` in a script) would
        # otherwise never stop on it.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        everything = children + ([redis_server] if redis_server else [])
        crashed = False
        try:
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
