"""The one-box launcher, `manage.py up`, as `make run` starts it: its own data folder and SQLite
database, a Redis it must start itself, daphne and a worker; SIGINT (Ctrl-C) stops all of it."""

import http.cookiejar
import json
import re
import signal
import socket
import sqlite3
import sys
import urllib.parse
import urllib.request
from io import StringIO

import psutil
import pytest
import redis
from django.contrib.auth import authenticate
from django.test import RequestFactory
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.servers import ServiceProcess, free_port, wait_for

pytestmark = pytest.mark.integration

ADMIN_USERNAME = "boss"
ADMIN_PASSWORD = "vintner-admin-Pa55-word"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as any server would
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


class OneBox:
    def __init__(self, process: ServiceProcess, *, port: int, redis_port: int, db_path, data_dir) -> None:
        self.process = process
        self.port = port
        self.redis_port = redis_port
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.url = f"http://127.0.0.1:{port}"
        self.db_path = db_path
        self.data_dir = data_dir

    def kill(self) -> None:
        """The safety net: whatever is left of this box, gone."""
        if self.process.alive():
            try:
                for child in psutil.Process(self.process.pid).children(recursive=True):
                    child.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.stop(signal.SIGKILL)

    def wait_for_worker(self, timeout: float = 90) -> list[tuple]:
        def reported():
            if not self.process.alive():
                raise RuntimeError(f"`manage.py up` exited:\n{self.process.log()}")
            return self.query(
                "SELECT hostname, queues FROM hosts_workerhost WHERE reported_at IS NOT NULL AND hostname LIKE 'local@%'"
            )

        return wait_for(reported, timeout=timeout, what="the one-box worker's capability report", interval=0.5)

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.db_path, timeout=10) as db:
            return db.execute(sql).fetchall()


def start_one_box(child_env, log_dir, data_dir) -> OneBox:
    """`manage.py up` in its own session, as a person would start it, with nothing else running for it."""
    db_path = data_dir / "vintner.sqlite3"
    port, redis_port = free_port(), free_port()
    env = dict(child_env)
    env.pop("SECRET_KEY", None)
    env.update(
        VINTNER_DATA_DIR=str(data_dir),
        DATABASE_URL=f"sqlite:///{db_path}",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        VINTNER_ADMIN_USERNAME=ADMIN_USERNAME,
        VINTNER_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    assert not _redis_answers(env["REDIS_URL"]), "the Redis port must be empty: `up` starts Redis itself"
    process = ServiceProcess(f"up-{port}", [sys.executable, "manage.py", "up", "--port", str(port)], env, log_dir)
    box = OneBox(process, port=port, redis_port=redis_port, db_path=db_path, data_dir=data_dir)

    def serving() -> bool:
        if not process.alive():
            raise RuntimeError(f"`manage.py up` exited:\n{process.log()}")
        return _listening(port)

    try:
        wait_for(serving, timeout=60, what="`manage.py up` to serve", interval=0.2)
    except BaseException:
        box.kill()
        raise
    return box


@pytest.fixture(scope="module")
def one_box(child_env, log_dir, tmp_path_factory) -> OneBox:
    box = start_one_box(child_env, log_dir, tmp_path_factory.mktemp("one-box"))
    yield box
    box.kill()  # normally test_it_stops_everything_on_sigint has stopped it already


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _named(children: list[psutil.Process], word: str) -> list[psutil.Process]:
    return [child for child in children if word in " ".join(child.cmdline())]


def test_it_answers_healthz_and_runs_its_own_redis(one_box):
    with urllib.request.urlopen(f"{one_box.url}/healthz", timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok", "database": "ok", "redis": "ok", "storage": "ok"}
    assert _redis_answers(one_box.redis_url)
    # The Redis answering there is the one `up` started (redis-server retitles itself "redis-server host:port").
    servers = [child for child in psutil.Process(one_box.process.pid).children() if child.name() == "redis-server"]
    assert len(servers) == 1
    assert one_box.redis_port in {conn.laddr.port for conn in servers[0].net_connections() if conn.status == "LISTEN"}


def test_it_lets_the_configured_admin_sign_in(one_box):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{one_box.url}/accounts/login/", timeout=10) as response:
        form = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": ADMIN_USERNAME,
                                   "password": ADMIN_PASSWORD}).encode()
    with opener.open(f"{one_box.url}/accounts/login/", data=body, timeout=10) as response:
        assert response.status == 200
        assert response.url.startswith(one_box.url)
        assert urllib.parse.urlparse(response.url).path != "/accounts/login/"  # let in, not shown the form again
    assert "sessionid" in {cookie.name for cookie in jar}
    with opener.open(f"{one_box.url}/api/v1/teams/", timeout=10) as response:
        assert response.status == 200  # the session authenticates
    # framed at the end of start-up, once the web server listens and the worker answers
    wait_for(lambda: "│ Vintner is running at" in one_box.process.log(), timeout=90, what="the framed start-up lines")
    log = one_box.process.log()
    assert f"First admin created: username '{ADMIN_USERNAME}'" in log
    assert ADMIN_PASSWORD not in log
    framed = re.search(r"┌─+┐\n│ Vintner is running at (\S+) .*│\n│ First admin created: username '(\w+)' .*│\n└─+┘", log)
    assert framed and framed.group(1) == f"{one_box.url}/" and framed.group(2) == ADMIN_USERNAME, log[-3000:]
    assert log.index("Listening on TCP address") < framed.start()


def test_it_starts_a_worker_that_reports_to_the_database(one_box):
    rows = one_box.wait_for_worker()
    assert len(rows) == 1
    assert sorted(json.loads(rows[0][1])) == ["optimize", "train"]


def test_it_stops_everything_on_sigint(one_box):
    """Runs last of the one_box tests: Ctrl-C on `up` stops the worker and daphne, then Redis."""
    one_box.wait_for_worker()
    children = psutil.Process(one_box.process.pid).children(recursive=True)
    (redis_server,), (daphne,), (worker, *_pool) = (_named(children, w) for w in ("redis-server", "daphne", "celery"))

    one_box.process.process.send_signal(signal.SIGINT)  # to `up` alone, not its process group
    redis_gone = wait_for(lambda: _gone(redis_server), timeout=30, what="redis-server to stop")
    assert redis_gone and _gone(worker) and _gone(daphne)  # Redis outlives its clients' shutdown
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
    assert one_box.process.process.wait(timeout=10) == 0
    assert not _listening(one_box.port) and _bindable(one_box.port)
    assert not _listening(one_box.redis_port) and _bindable(one_box.redis_port)
    # The worker shut down warmly: it marked itself stopped.
    assert one_box.query("SELECT COUNT(*) FROM hosts_workerhost WHERE stopped_at IS NULL") == [(0,)]
    assert "Stopping Vintner" in one_box.process.log()


def test_it_stops_everything_and_fails_when_one_part_dies(child_env, log_dir, tmp_path):
    box = start_one_box(child_env, log_dir, tmp_path)
    try:
        children = psutil.Process(box.process.pid).children(recursive=True)
        (daphne,) = _named(children, "daphne")
        daphne.kill()
        assert box.process.process.wait(timeout=30) != 0  # a supervisor sees the failure and restarts it
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
        assert not _listening(box.redis_port)
        assert "A Vintner process exited" in box.process.log()
    finally:
        box.kill()


def signs_in(username: str, password: str):
    """The user these credentials sign in, through every backend (django-axes wants the request)."""
    return authenticate(RequestFactory().post("/accounts/login/"), username=username, password=password)


@pytest.mark.django_db
def test_it_prints_generated_admin_credentials_once(monkeypatch):
    monkeypatch.delenv("VINTNER_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("VINTNER_ADMIN_USERNAME", raising=False)
    first, second = StringIO(), StringIO()
    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=second)

    match = re.search(r"First admin created: username 'admin', password '([^']+)'", first.getvalue())
    assert match, first.getvalue()
    assert signs_in("admin", match.group(1)).is_superuser
    assert second.getvalue() == ""

    # a lost password: a new one, printed once; the old one stops working
    reset = StringIO()
    call_command("ensure_admin", "--reset-password", stdout=reset)
    new = re.search(r"New password for site admin 'admin': '([^']+)'", reset.getvalue()).group(1)
    assert new != match.group(1) and signs_in("admin", new).is_superuser
    assert signs_in("admin", match.group(1)) is None
    with pytest.raises(CommandError, match="No site admin is named 'nobody'"):
        call_command("ensure_admin", "--reset-password", "nobody")
