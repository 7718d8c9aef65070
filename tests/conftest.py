"""Shared fixtures: named users (alice owns team A, bob is in it, charlie is an outsider),
and the real processes that integration and browser tests run against."""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from tests.plugin import DATA_DIR_KEY, REDIS_KEY
from tests.servers import RedisServer, ServiceProcess, start_daphne, start_worker, wait_for
from webapp.teams.models import Membership, Role, Team

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def redis_server(pytestconfig) -> RedisServer:
    return pytestconfig.stash[REDIS_KEY]


@pytest.fixture(scope="session")
def log_dir(pytestconfig) -> Path:
    path = pytestconfig.stash[DATA_DIR_KEY] / "logs"
    path.mkdir(exist_ok=True)
    return path


def _database_url() -> str:
    """The test database, as a URL the child processes' settings understand."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def child_env(django_db_setup, redis_server) -> dict[str, str]:
    """Environment for servers and workers: same Redis, data folder and (test) database as the tests."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings",
        DATABASE_URL=_database_url(),
        REDIS_URL=redis_server.url,
        VINTNER_DATA_DIR=str(settings.DATA_DIR),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def celery_worker(child_env, log_dir, django_db_blocker) -> ServiceProcess:
    """A real worker on both queues for a test module. Tests using it need `transactional_db`."""
    from webapp.hosts.models import WorkerHost

    started = timezone.now()
    worker = start_worker(child_env, log_dir, name="test")

    def reported() -> bool:
        if not worker.alive():
            raise RuntimeError(f"celery worker exited:\n{worker.log()}")
        with django_db_blocker.unblock():
            return WorkerHost.objects.filter(hostname__startswith="test@", reported_at__gte=started).exists()

    try:
        wait_for(reported, timeout=120, what="the test worker's capability report", interval=0.5)
    except TimeoutError:
        worker.stop()
        raise TimeoutError(f"worker never reported:\n{worker.log()}")
    yield worker
    worker.stop()


@pytest.fixture
def worker_host(celery_worker, transactional_db):
    """The session worker's row, as it re-reports after the previous test's database flush."""
    from webapp.hosts.models import WorkerHost

    return wait_for(
        # Queues come with the heartbeat: a report landing right after a flush makes a row without them.
        lambda: WorkerHost.objects.filter(hostname__startswith="test@", reported_at__isnull=False)
        .exclude(queues=[])
        .first(),
        timeout=60,
        what="the test worker to report again",
        interval=0.2,
    )


@pytest.fixture(scope="session")
def live_server_url(child_env, log_dir) -> str:
    """daphne serving the real ASGI app (HTTP + websockets). Tests using it need `transactional_db`."""
    server, url = start_daphne(child_env, log_dir)
    yield url
    server.stop()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Tests run async scenarios in event loops of their own (async_to_sync); the channel layer
    holds asyncio locks bound to the loop that first waited on them, so no test may reuse one."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def make_user(username: str, **extra):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=username, email=f"{username}@example.com", password=PASSWORD, **extra)


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def charlie(db):
    return make_user("charlie")


@pytest.fixture
def team_a(alice, bob) -> Team:
    """Alice owns team A; Bob is a member."""
    team = Team.objects.create(name="Team A")
    Membership.objects.create(team=team, user=alice, role=Role.OWNER)
    Membership.objects.create(team=team, user=bob, role=Role.MEMBER)
    return team


@pytest.fixture
def team_c(charlie) -> Team:
    """Charlie's own team, which alice and bob are not in."""
    team = Team.objects.create(name="Team C")
    Membership.objects.create(team=team, user=charlie, role=Role.OWNER)
    return team
