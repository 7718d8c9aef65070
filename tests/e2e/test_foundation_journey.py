"""The foundation, as a person uses it: a real headless browser against daphne, with a real worker.

Alice signs in, makes a team and a project, adds Bob and promotes him, watches the project's live
feed connect, switches teams, finds the worker, changes her password and signs out; Bob then sees
the project and Charlie, an outsider, gets the 404 page.

Screenshots of the key pages go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 they replace
the ones in docs/screenshots/ that illustrate the user guide.
"""

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, make_user
from tests.e2e.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 860}
MOBILE = {"width": 390, "height": 844}
NEW_PASSWORD = "purple grapes ferment slowly 42"


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=folder / f"{name}.png", animations="disabled", caret="hide")


def nav(page: Page):
    return page.locator("nav.nav")


def open_menu(page: Page, selector: str):
    """Open a <details> menu in the top bar and return its menu panel."""
    details = page.locator(selector)
    details.locator("summary").click()
    expect(details).to_have_attribute("open", "")
    return details.locator(".menu")


def flash(page: Page):
    return page.locator(".messages [role=status]")


# Kept first in the module: it does not need the worker, and the journey below (which does) leaves
# the worker's row freshly re-reported after its flush for whichever worker test comes next.
def test_api_docs_are_served_from_the_site_itself(live_server_url, browser, screenshots):
    """Swagger UI comes from the sidecar package through our own origin: it works air-gapped."""
    make_user("alice")
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(live_server_url))
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    requests, failures = [], []
    page.on("request", lambda request: requests.append(request.url))
    sign_in(page, live_server_url, "alice")
    # Failures count from the docs page on: leaving the signed-in page aborts what it still loads.
    page.on("requestfailed", lambda request: failures.append(f"{request.url}: {request.failure}"))

    response = page.goto(f"{live_server_url}/api/docs/")
    assert response.ok
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Vintner API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    expect(page.get_by_text("/api/v1/workers/", exact=True)).to_be_visible()
    page.wait_for_load_state("networkidle")
    shot(page, screenshots, "api-docs")
    context.close()

    outside = [url for url in requests if not (url.startswith(origin + "/") or url.startswith("data:"))]
    assert not outside, f"requests left the site: {outside}"
    assert not failures, f"failed requests: {failures}"
    assert any("/static/drf_spectacular_sidecar/" in url for url in requests)
    assert any(url.startswith(f"{origin}/api/schema/") for url in requests)


def test_foundation_journey(live_server_url, worker_host, browser, screenshots):
    base = live_server_url
    make_user("alice", is_staff=True)  # a site admin: by default only they make teams (TEAMS_PER_USER)
    make_user("bob")
    make_user("charlie")

    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    page = context.new_page()

    # Signed out, every page leads to the login form.
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, screenshots, "login")

    # A wrong password is refused, the right one lets Alice in.
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error")).to_contain_text("did not match")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # No team yet: the team list explains it and offers the form.
    expect(page.get_by_role("heading", name="Your teams")).to_be_visible()
    expect(page.locator(".empty")).to_contain_text("not in a team yet")
    shot(page, screenshots, "teams-empty")
    page.get_by_label("Name").fill("Vineyard Lab")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", name="Vineyard Lab", level=1)).to_be_visible()
    expect(flash(page)).to_contain_text("Team Vineyard Lab created")
    expect(page.get_by_text("No projects yet.")).to_be_visible()
    team_url = page.url

    # A project, from the team page.
    page.get_by_label("Name").fill("Grape classifier")
    page.get_by_label("Description").fill("Sorts grape photos by variety; exported to OpenVINO for the edge boxes.")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_test_id("project-name")).to_have_text("Grape classifier")
    expect(page.get_by_test_id("feed-status")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("feed-status")).to_have_text("live")
    project_url = page.url
    shot(page, screenshots, "project")

    # Bob joins as a viewer, then becomes an admin through the role select.
    nav(page).get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members", level=1)).to_be_visible()
    page.get_by_label("Username or e-mail").fill("bob")
    add_form = page.locator("form", has=page.get_by_role("button", name="Add member"))
    add_form.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Add member").click()
    expect(flash(page)).to_contain_text("bob joined Vineyard Lab as viewer")
    bob_role = page.get_by_label("Role of bob")
    expect(bob_role).to_have_value("viewer")
    bob_role.select_option("admin")
    expect(flash(page)).to_contain_text("bob is now admin")
    expect(page.get_by_label("Role of bob")).to_have_value("admin")
    expect(page.get_by_label("Role of alice")).to_have_value("owner")
    shot(page, screenshots, "members")
    page.set_viewport_size(MOBILE)
    shot(page, screenshots, "members-mobile")
    page.set_viewport_size(DESKTOP)

    # The team page lists the project.
    page.goto(team_url)
    expect(page.get_by_test_id("project-list").get_by_role("link", name="Grape classifier")).to_be_visible()
    shot(page, screenshots, "team")

    # A second team, then back to the first with the switcher.
    open_menu(page, "[data-testid=team-switcher]").get_by_role("link", name=re.compile("new team")).click()
    page.get_by_label("Name").fill("Cellar Ops")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", name="Cellar Ops", level=1)).to_be_visible()
    expect(page.locator("[data-testid=team-switcher] summary")).to_have_text("Cellar Ops")
    switcher = open_menu(page, "[data-testid=team-switcher]")
    shot(page, screenshots, "team-switcher")
    switcher.get_by_role("button", name="Vineyard Lab").click()
    expect(page.get_by_role("heading", name="Vineyard Lab", level=1)).to_be_visible()
    expect(page.locator("[data-testid=team-switcher] summary")).to_have_text("Vineyard Lab")
    page.goto(f"{base}/")
    expect(page).to_have_url(team_url)  # the choice sticks

    # The phone layout: the menu folds behind a toggle.
    page.set_viewport_size(MOBILE)
    expect(nav(page)).to_be_hidden()
    page.locator(".nav-toggle-label").click()
    expect(nav(page)).to_be_visible()
    shot(page, screenshots, "team-mobile")
    page.goto(project_url)
    expect(page.get_by_test_id("feed-status")).to_have_attribute("data-state", "live")
    shot(page, screenshots, "project-mobile")
    page.set_viewport_size(DESKTOP)

    # The Workers page shows the test worker, online, with what it reported.
    caps = worker_host.capabilities
    nav(page).get_by_role("link", name="Workers").click()
    expect(page.get_by_role("heading", name="Workers", level=1)).to_be_visible()
    card = page.locator(f"[data-testid=worker][data-hostname='{worker_host.hostname}']")
    expect(card).to_be_visible()
    expect(card).to_contain_text("online")
    expect(card.locator(".dot.on")).to_be_visible()
    expect(card).to_contain_text(caps["cpu"]["model"])
    expect(card.get_by_test_id("openvino-device")).to_have_text([d["name"] for d in caps["openvino"]["devices"]])
    shot(page, screenshots, "workers")
    page.set_viewport_size(MOBILE)
    shot(page, screenshots, "workers-mobile")
    page.set_viewport_size(DESKTOP)

    # A new password, then sign out.
    open_menu(page, ".user-menu").get_by_role("link", name="Change password").click()
    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
    shot(page, screenshots, "password-change")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    open_menu(page, ".user-menu").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.goto(project_url)
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    context.close()

    # Alice's new password works, in a fresh browser.
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, base, "alice", NEW_PASSWORD)
    context.close()

    # Bob, now an admin of Vineyard Lab, sees the project and may manage it.
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, base, "bob")
    expect(page.get_by_role("heading", name="Vineyard Lab", level=1)).to_be_visible()
    page.get_by_test_id("project-list").get_by_role("link", name="Grape classifier").click()
    expect(page.get_by_test_id("project-name")).to_have_text("Grape classifier")
    expect(page.get_by_test_id("delete-project")).to_be_visible()  # a link to the confirmation page
    expect(page.get_by_test_id("feed-status")).to_have_attribute("data-state", "live")
    context.close()

    # Charlie is in no team: the project is simply not there for him.
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, base, "charlie")
    response = page.goto(project_url)
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_text("Grape classifier")).to_have_count(0)
    shot(page, screenshots, "not-found")
    context.close()
