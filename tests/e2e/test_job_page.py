"""The job pages as a person uses them: a real headless browser against daphne, a real Celery
worker running compute probes, live updates through the real Redis channel layer.

Alice starts a probe from her project page and watches it on the job page (log, progress bar,
metric chart), reloads it mid-run, sees it succeed; her project page follows a job submitted
elsewhere; she cancels a long probe; and a job with 100,000 log lines keeps the page responsive.

Screenshots go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 to docs/screenshots/.
"""

import re
import time

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.e2e.helpers import by_testid, shot, sign_in, submit_probe
from tests.jobs_helpers import events, make_project, wait_done
from webapp.jobs.models import Job, JobEvent, JobState

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JOB_URL = re.compile(r"/jobs/(\d+)/$")


@pytest.fixture
def project(team_a):
    return make_project(team_a, "Grape classifier")


def log_lines(page: Page):
    return by_testid(page, "log").locator(".line")


def run_probe_from_project_page(page: Page, base: str, project, *, rounds: int, seconds: float) -> int:
    page.goto(f"{base}/projects/{project.id}/")
    page.get_by_text("Run a compute probe").click()
    form = by_testid(page, "probe-form")
    form.locator("input[name=rounds]").fill(str(rounds))
    form.locator("input[name=seconds_per_round]").fill(str(seconds))
    form.locator("input[name=matrix_size]").fill("64")
    form.get_by_role("button", name="Run compute probe").click()
    page.wait_for_url(JOB_URL)
    return int(JOB_URL.search(page.url).group(1))


def rounds_seen(page: Page) -> list[int]:
    return [int(n) for n in re.findall(r"Round (\d+)/", by_testid(page, "log").inner_text())]


def progress_value(page: Page) -> float:
    return float(by_testid(page, "job-progress").evaluate("bar => bar.value"))


def test_it_follows_a_probe_live_replays_it_after_a_reload_and_shows_it_succeed(
    live_server_url, worker_host, page, alice, project, screenshots
):
    sign_in(page, live_server_url, "alice")
    job_id = run_probe_from_project_page(page, live_server_url, project, rounds=40, seconds=0.2)
    expect(by_testid(page, "feed-status")).to_have_attribute("data-state", "live")

    # Live: log lines, a rising progress bar, a chart of the metric.
    expect(by_testid(page, "job-state")).to_have_text("running", timeout=30_000)
    expect(by_testid(page, "log")).to_contain_text("Round 1/40")
    expect(by_testid(page, "charts").locator("canvas").first).to_be_visible()
    expect(by_testid(page, "charts-card")).to_contain_text("gflops_cpu")
    before = progress_value(page)
    page.wait_for_function(
        f"document.querySelector('[data-testid=job-progress]').value > {before}", timeout=10_000
    )
    expect(by_testid(page, "job-percent")).not_to_have_text("0%")
    expect(by_testid(page, "job-stage")).to_have_text("measuring")
    shot(page, screenshots, "job-running")

    # Reload mid-run: the whole history again, then it keeps following.
    assert Job.objects.get(id=job_id).state == JobState.RUNNING
    latest = max(rounds_seen(page))
    page.reload()
    expect(by_testid(page, "log")).to_contain_text("Round 1/40")
    expect(by_testid(page, "log")).to_contain_text(f"Round {latest}/40")
    expect(by_testid(page, "log")).to_contain_text(f"Round {latest + 2}/40", timeout=10_000)
    expect(by_testid(page, "charts").locator("canvas").first).to_be_visible()

    # The end: succeeded at 100 %, every round once and in order, exactly the stored lines.
    expect(by_testid(page, "job-state")).to_have_text("succeeded", timeout=30_000)
    expect(by_testid(page, "job-percent")).to_have_text("100%")
    expect(by_testid(page, "cancel-form")).to_be_hidden()
    expect(by_testid(page, "feed-status")).to_be_hidden()  # finished: nothing more is live
    expect(by_testid(page, "job-result")).to_contain_text("median_gflops")
    expect(by_testid(page, "job-params").locator("[data-param=rounds]")).to_have_text("40")  # a list, not JSON
    expect(by_testid(page, "job-params")).not_to_contain_text("{")
    assert rounds_seen(page) == list(range(1, 41))
    stored = [event.data["message"] for event in events(job_id, "log")]
    expect(log_lines(page)).to_have_count(len(stored))
    assert log_lines(page).all_inner_texts() == stored
    shot(page, screenshots, "job-succeeded")


def open_project_page(page: Page, base: str, project) -> None:
    page.goto(f"{base}/projects/{project.id}/")
    expect(by_testid(page, "feed-status")).to_have_attribute("data-state", "live")
    page.evaluate("window.__notReloaded = true")


def test_it_shows_a_job_submitted_elsewhere_on_the_project_page_live(
    live_server_url, worker_host, page, alice, project, screenshots
):
    sign_in(page, live_server_url, "alice")
    open_project_page(page, live_server_url, project)
    expect(by_testid(page, "no-jobs")).to_be_visible()

    job_id = submit_probe(page, live_server_url, alice, project, {"rounds": 8, "seconds_per_round": 0.2, "matrix_size": 64})
    row = by_testid(page, "job-list").locator(f'tr[data-job="{job_id}"]')
    expect(row).to_be_visible()
    expect(by_testid(page, "no-jobs")).to_be_hidden()
    expect(row.locator("[data-field=state]")).to_have_text("running", timeout=30_000)
    expect(row.locator("[data-field=state]")).to_have_text("succeeded", timeout=30_000)
    expect(row.locator("[data-field=progress]")).to_have_js_property("value", 1)
    assert page.evaluate("window.__notReloaded") is True
    shot(page, screenshots, "project-jobs-live")


def test_it_shows_the_newest_state_of_a_job_whose_row_was_still_loading(
    live_server_url, worker_host, page, alice, project
):
    """Updates that arrive while the page fetches a new job's row are not lost: the row shows
    the newest one, not the state the row had when it was fetched."""
    sign_in(page, live_server_url, "alice")
    page.add_init_script("""
      const originalFetch = window.fetch;
      let release;
      const released = new Promise((resolve) => { release = resolve; });
      window.__releaseRows = () => release();
      window.fetch = async (...args) => {
        const response = await originalFetch(...args);
        if (String(args[0]).includes("/row/")) await released;
        return response;
      };
    """)
    open_project_page(page, live_server_url, project)

    job_id = submit_probe(page, live_server_url, alice, project, {"rounds": 2, "seconds_per_round": 0.1, "matrix_size": 64})
    assert wait_done(job_id, timeout=60).state == JobState.SUCCEEDED
    time.sleep(1)  # the last job.updated messages reach the page while its row is still loading
    page.evaluate("window.__releaseRows()")
    row = by_testid(page, "job-list").locator(f'tr[data-job="{job_id}"]')
    expect(row.locator("[data-field=state]")).to_have_text("succeeded", timeout=5_000)
    expect(row).to_have_count(1)


def test_it_cancels_a_running_probe_from_its_page(live_server_url, worker_host, page, alice, project):
    sign_in(page, live_server_url, "alice")
    job_id = run_probe_from_project_page(page, live_server_url, project, rounds=300, seconds=0.2)
    expect(by_testid(page, "job-state")).to_have_text("running", timeout=30_000)
    expect(by_testid(page, "log")).to_contain_text("Round 1/300", timeout=30_000)  # the jailed step starts first

    clicked = time.monotonic()
    by_testid(page, "cancel-form").get_by_role("button", name="Cancel").click()
    expect(by_testid(page, "job-state")).to_have_text("cancelled", timeout=5_000)
    assert time.monotonic() - clicked < 5
    expect(by_testid(page, "cancel-form")).to_be_hidden()
    expect(by_testid(page, "log")).to_contain_text("Cancelled; partial outputs removed.")
    assert Job.objects.get(id=job_id).state == JobState.CANCELLED


LOG_VOLUME = 100_000
MAX_SHOWN = 5000  # static/js/job_detail.js MAX_LINES


def finished_job_with_a_huge_log(project, alice) -> Job:
    job = Job.objects.create(project=project, kind="probe", created_by=alice, queue="optimize",
                             state=JobState.SUCCEEDED, progress=1.0, finished_at=timezone.now())
    rows = [JobEvent(job=job, seq=seq, kind="log", data={"level": "info", "message": f"message {seq}"})
            for seq in range(1, LOG_VOLUME + 1)]
    rows.append(JobEvent(job=job, seq=LOG_VOLUME + 1, kind="state", data={"state": "succeeded"}))
    JobEvent.objects.bulk_create(rows, batch_size=5000)
    Job.objects.filter(id=job.id).update(last_seq=LOG_VOLUME + 1)
    return job


def test_it_stays_responsive_while_replaying_100000_log_lines(live_server_url, page, alice, project):
    job = finished_job_with_a_huge_log(project, alice)
    sign_in(page, live_server_url, "alice")
    page.goto(f"{live_server_url}/jobs/{job.id}/")

    last_line = log_lines(page).last
    slowest, during_replay = 0.0, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        started = time.monotonic()
        shown = page.evaluate("document.querySelector('[data-testid=log] .line:last-child')?.textContent ?? ''")
        slowest = max(slowest, time.monotonic() - started)
        if shown == f"message {LOG_VOLUME}":
            break
        during_replay += 1
        page.wait_for_timeout(50)
    assert slowest < 2, f"the page took {slowest:.1f} s to answer while replaying"
    assert during_replay > 0  # it was measured while the replay was still going on

    expect(last_line).to_have_text(f"message {LOG_VOLUME}", timeout=1_000)
    expect(by_testid(page, "job-state")).to_have_text("succeeded")
    count = log_lines(page).count()
    assert 0 < count <= MAX_SHOWN
    assert log_lines(page).first.inner_text() == f"message {LOG_VOLUME - count + 1}"  # the newest, contiguous
    note = by_testid(page, "log").locator(".trimmed")
    expect(note).to_contain_text("earlier lines are not shown")
    expect(note).to_contain_text(f"{LOG_VOLUME - count} earlier lines")
