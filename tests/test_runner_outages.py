"""An attempt's last write outlives a brief database outage: tried again with backoff within the
lease, then given up (the reconciler decides). And workers take one message per free process."""

import pytest
from django.conf import settings
from django.db import OperationalError

from workers import runner


@pytest.fixture(autouse=True)
def no_reconnecting(monkeypatch):
    """The writes here fail without touching a database: there is no connection to drop."""
    monkeypatch.setattr(runner, "close_old_connections", lambda: None)


def test_the_last_write_is_tried_again_through_a_brief_outage(monkeypatch):
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: pauses.append(seconds))
    pauses, tries = [], []

    def write():
        tries.append(1)
        if len(tries) < 4:
            raise OperationalError("connection refused")
        return True

    assert runner._through_outages(write, first=0.01, last=0.04) is True
    assert pauses == [0.01, 0.02, 0.04]


def test_a_long_outage_is_left_to_the_reconciler(monkeypatch):
    monkeypatch.setattr(settings, "JOB_LEASE_SECONDS", 0)

    def write():
        raise OperationalError("connection refused")

    with pytest.raises(OperationalError):
        runner._through_outages(write, first=0.01)


def test_workers_take_no_message_they_cannot_start():
    from webapp.celery import app

    assert app.conf.worker_disable_prefetch and app.conf.worker_prefetch_multiplier == 1
