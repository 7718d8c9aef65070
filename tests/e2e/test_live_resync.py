"""A live job page through a Redis restart: a real browser on daphne, the real channels_redis
layer, and a Redis that is stopped and started again empty while the page is open. The events
come from this process's store (events_append), as a worker's would."""

import threading

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import by_testid, sign_in
from tests.jobs_helpers import make_project
from webapp.jobs.events import events_append
from webapp.jobs.models import Job, JobState

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def say(job_id: int, message: str) -> None:
    """Store a log event and ring its bell from a thread of its own: the main thread runs
    Playwright's event loop, where the broadcast's async_to_sync cannot run."""
    thread = threading.Thread(target=events_append, args=(job_id, [("log", {"level": "info", "message": message})]))
    thread.start()
    thread.join()


def restart_empty(redis_server) -> None:
    redis_server.stop()
    for path in redis_server.data_dir.rglob("*"):  # groups and channels gone, as after a crash
        if path.is_file():
            path.unlink()
    redis_server.start()


def test_it_keeps_an_open_job_page_live_through_a_redis_restart(live_server_url, page, alice, team_a, redis_server):
    project = make_project(team_a)
    job = Job.objects.create(project=project, kind="probe", created_by=alice, queue="optimize", state=JobState.RUNNING)
    sign_in(page, live_server_url, "alice")
    page.goto(f"{live_server_url}/jobs/{job.id}/")
    expect(by_testid(page, "feed-status")).to_have_attribute("data-state", "live")
    say(job.id, "before the restart")
    expect(by_testid(page, "log")).to_contain_text("before the restart")

    restart_empty(redis_server)
    say(job.id, "while the page resubscribes")  # its bell is lost: the page reads it from the store
    say(job.id, "after the restart")
    expect(by_testid(page, "log")).to_contain_text("after the restart", timeout=20_000)
    expect(by_testid(page, "log")).to_contain_text("while the page resubscribes")
    lines = by_testid(page, "log").locator(".line").all_inner_texts()
    assert [line for line in lines if "restart" in line or "resubscribes" in line] == [
        "before the restart", "while the page resubscribes", "after the restart"]  # each once, in order
    expect(by_testid(page, "feed-status")).to_have_attribute("data-state", "live")
