"""The many-host tier: Postgres, a real S3 server, Redis, daphne, a `train` worker and an
`optimize` worker (concurrency 2), each with its own data folder. A user's whole journey goes
through the command line (dataset upload, train, convert, quantize, benchmark, download) while
each worker is killed in the middle of a job and replaced by another host. Then: nothing is
lost, no host's local path is in the database, and the bucket and the rows agree object for
object, checksums included. Each host runs with a disk of its own (tests/hosts.py own_disk)."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.hosts import Hosts, journey, rows, shared_paths, storage_mismatches

pytestmark = [pytest.mark.integration, pytest.mark.hosts]


@pytest.fixture(scope="module")
def hosts(log_dir):
    root = Path(tempfile.mkdtemp(prefix="vintner-hosts-"))
    hosts = Hosts(root, log_dir)
    try:
        yield hosts.ready()
    finally:
        hosts.stop()


def test_the_journey_survives_killed_workers_and_leaves_storage_exact(hosts, tmp_path):
    made = journey(hosts, tmp_path)
    assert made["train_attempts"] == 2
    # nothing lost, nothing left over
    assert rows(hosts, "SELECT id, state FROM jobs_job WHERE state <> 'succeeded'") == []
    hosts.manage("sweep_storage", "--grace", "0")
    assert storage_mismatches(hosts) == []
    assert shared_paths(hosts) == [], "a host's local path is in the database"


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace per host needs root, as the tier's Postgres does")
def test_a_host_sees_its_own_data_folder_and_nothing_else_of_the_tier(hosts):
    hosts.env("optimize-x")
    secret = hosts.root / "optimize-x" / "checkpoint.pt"
    secret.write_bytes(b"another host's file")
    hosts.env("train-x")
    done = subprocess.run([*hosts.own_disk("train-x"), "sh", "-c", f'ls -A "{hosts.root}"; cat "{secret}"'],
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["train-x"]  # not the other hosts', the bucket's or Redis's folders
    assert "No such file" in done.stderr
    assert secret.read_bytes() == b"another host's file"  # the host's view changed nothing outside it
