"""What the browser tests share: signing in, finding elements, screenshots, the REST calls they
make through daphne, and recording what a live panel showed."""

import re
from pathlib import Path

from playwright.sync_api import Page, expect
from webapp.core.tokens import token_issue

from tests.conftest import PASSWORD
from tests.jobs_helpers import wait_state
from webapp.jobs.models import JobState


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=folder / f"{name}.png", full_page=True, animations="disabled", caret="hide")


def sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".user-menu summary")).to_have_text(username)


def by_testid(page: Page, testid: str):
    return page.locator(f"[data-testid={testid}]")


ARTIFACT_LINK = re.compile(r"^artifact #(\d+)$")


def succeeded(page: Page, timeout: float = 180_000) -> None:
    """The job page shows the job ended; anything but success fails with what the page says."""
    state = by_testid(page, "job-state")
    expect(state).to_have_text(re.compile(r"^(succeeded|failed|cancelled)$"), timeout=timeout)
    if state.text_content().strip() != "succeeded":
        raise AssertionError(f"{page.url}: {state.text_content()}\n{page.locator('main').inner_text()[:3000]}")


def artifact_link(page: Page) -> int:
    """The id of the artifact the job page's output links."""
    output = by_testid(page, "job-output").get_by_role("link")
    expect(output).to_have_text(ARTIFACT_LINK)
    return int(ARTIFACT_LINK.match(output.inner_text().strip()).group(1))


def download(page: Page, testid: str, folder: Path) -> Path:
    """What clicking the element saves, under the name the server suggested, in `folder`."""
    with page.expect_download() as info:
        by_testid(page, testid).click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def open_deploy_page(page: Page, base: str, artifact_id: int) -> None:
    """The artifact's deploy page, reached by its link on the artifact page."""
    page.goto(f"{base}/artifacts/{artifact_id}/")
    by_testid(page, "deploy-link").click()
    page.wait_for_url(f"**/artifacts/{artifact_id}/deploy/")


def open_comparison(page: Page, base: str, model_id: int, max_drop, metric: str = "") -> None:
    """The model's comparison, reached from the model page, applied with `max_drop` points (and
    `metric`, where given)."""
    page.goto(f"{base}/models/{model_id}/")
    by_testid(page, "compare-variants").click()
    page.wait_for_url(f"**/models/{model_id}/compare/")
    if metric:
        by_testid(page, "compare-metric").select_option(metric)
    by_testid(page, "compare-max-drop").fill(str(max_drop))
    by_testid(page, "compare-apply").click()
    page.wait_for_url(re.compile(rf"max_drop={max_drop}"))


def api_headers(user) -> dict[str, str]:
    return {"Authorization": f"Token {token_issue(user=user)[1]}"}


def submit_probe(page: Page, base: str, user, project, params: dict) -> int:
    """POST /api/v1/projects/<id>/jobs/ with the user's API token, through daphne (not from this
    process: its main thread runs Playwright's event loop, where a broadcast cannot be sent)."""
    response = page.request.post(f"{base}/api/v1/projects/{project.id}/jobs/", headers=api_headers(user),
                                 data={"kind": "probe", "params": params})
    assert response.status == 201, response.text()
    return response.json()["id"]


def start_long_probe(page: Page, base: str, user, project) -> int:
    """Keeps the test worker (one slot) busy, so the next job waits, queued, until we cancel this.
    A tiny archive or model is done faster than a page loads: without it the page would never
    be seen waiting."""
    job_id = submit_probe(page, base, user, project,
                          {"rounds": 600, "seconds_per_round": 0.2, "matrix_size": 32, "queue": "optimize"})
    wait_state(job_id, JobState.RUNNING, timeout=60)
    return job_id


def cancel_job(page: Page, base: str, user, job_id: int) -> None:
    response = page.request.post(f"{base}/api/v1/jobs/{job_id}/cancel/", headers=api_headers(user))
    assert response.ok, response.text()


def assert_hidden_from(page: Page, base: str, outsider, pages: list[str], *, api: list[str] = (), name: str) -> None:
    """Signed in afresh, the outsider gets a 404 for each page and API path, and the first page
    says nothing of `name`."""
    page.context.clear_cookies()
    sign_in(page, base, outsider.username)
    for path in pages:
        response = page.request.get(f"{base}{path}")
        assert response.status == 404, (path, response.status)
    for path in api:
        response = page.request.get(f"{base}{path}", headers=api_headers(outsider))
        assert response.status == 404, (path, response.status)
    response = page.goto(f"{base}{pages[0]}")
    assert response.status == 404
    expect(page.locator("body")).not_to_contain_text(name)


def hold_form_submit(page: Page) -> None:
    """Make the page's script-driven form.submit() wait: the form is kept in window.__held, and
    window.__release() sends it."""
    page.evaluate("""() => {
      const send = HTMLFormElement.prototype.submit;
      HTMLFormElement.prototype.submit = function () { window.__held = this; };
      window.__release = () => send.call(window.__held);
    }""")


def record_live_panel(page: Page, panel: str) -> None:
    """Record what the live panel `<panel>-panel` shows (stage, progress, log lines) in
    sessionStorage, where the page's reload at the end does not wipe it (read it back with
    seen_in_live_panel); window.__notReloaded tells whether that reload happened."""
    page.evaluate("""(panel) => {
      const seen = (what) => sessionStorage.setItem('seen', (sessionStorage.getItem('seen') || '') + what + '|');
      const $ = (id) => document.querySelector(`[data-testid=${panel}-${id}]`);
      new MutationObserver(() => {
        seen('stage:' + $('stage').textContent);
        seen('progress:' + $('progress').value);
        seen('log:' + $('log').querySelectorAll('.line').length);
      }).observe($('panel'), {subtree: true, childList: true, attributes: true, characterData: true});
      window.__notReloaded = true;
    }""", panel)


def seen_in_live_panel(page: Page) -> str:
    """What record_live_panel recorded: 'stage:…|progress:…|log:…|…'."""
    return page.evaluate("sessionStorage.getItem('seen')") or ""
