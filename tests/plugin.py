"""Loaded with `-p tests.plugin`: starts a private Redis and data folder before Django reads
its settings, so that every test, server and worker of this run uses them and nothing else."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.servers import RedisServer

REDIS_KEY = pytest.StashKey[RedisServer]()
DATA_DIR_KEY = pytest.StashKey[Path]()


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    data_dir = Path(tempfile.mkdtemp(prefix="vintner-test-"))
    os.environ["VINTNER_DATA_DIR"] = str(data_dir)
    # Fault handling on a test's time scale: short leases, quick reconciling.
    os.environ.update(
        WORKER_HEARTBEAT_SECONDS="1",
        RECONCILE_SECONDS="1",
        JOB_LEASE_SECONDS="3",
        JOB_CANCEL_GRACE_SECONDS="4",
        JOB_REQUEUE_AFTER_SECONDS="2",
        # One address and a few users make every request of a run: the rate-limit tests set
        # small limits for themselves (tests/test_throttles.py), the rest never meet them.
        THROTTLE_LOGIN="100000/min",
        THROTTLE_UPLOADS="100000/min",
        THROTTLE_JOBS="100000/min",
    )
    os.environ.pop("VINTNER_PRODUCTION", None)
    # Parallel test processes (pytest-xdist's gw0, gw1...) run jobs with the same numbers: each
    # gets its own range of jail users, so no two concurrent jobs share a uid and its limits.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    os.environ["JAIL_UID"] = str(61000 + 1000 * int(worker.removeprefix("gw") or 0))
    server = RedisServer(data_dir).start()
    os.environ["REDIS_URL"] = server.url
    early_config.stash[REDIS_KEY] = server
    early_config.stash[DATA_DIR_KEY] = data_dir
    return (yield)


def pytest_unconfigure(config):
    server = config.stash.get(REDIS_KEY, None)
    if server:
        server.stop()
    data_dir = config.stash.get(DATA_DIR_KEY, None)
    if data_dir and not os.environ.get("VINTNER_KEEP_TEST_DATA"):
        shutil.rmtree(data_dir, ignore_errors=True)
