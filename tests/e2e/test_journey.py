"""The whole journey, one browser test, against the product started the way `make run` starts it:
`python manage.py up` (migrate, the first admin, its own Redis, daphne, one Celery worker on both
queues), in a data folder of its own. The test talks to it over HTTP and websockets only: no test
database, no ORM.

The site admin adds alice, bob and charlie in /admin/. Alice makes a team and a project, adds bob
as a member, uploads a colours dataset and watches it import; trains a small CNN through the form
and sees its curves grow while it runs; converts it to OpenVINO IR; quantizes the IR to INT8 and
reads the accuracy before and after; benchmarks both IRs; compares them; downloads the INT8 IR's
zip from its deployment page and runs the page's program on a red picture: it answers "red". Bob,
of the same team, sees the project, the model and the comparison. Charlie, an outsider, gets a 404
for every page and API path of it, and his token opens none of its job websockets.

Screenshots (journey-*) go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 to docs/screenshots/.
"""

import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from PIL import Image
from playwright.sync_api import Page, expect

from tests.archive_builders import colour_classes, make_zip
from tests.e2e.helpers import (artifact_link, by_testid, download, open_comparison, open_deploy_page, shot,
                               sign_in, succeeded)
from tests.servers import ROOT, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ADMIN_PASSWORD = "journey admin password 7"
PASSWORD = "journey user password 42"
JOB_URL = re.compile(r"/jobs/(\d+)/$")
DATASET_URL = re.compile(r"/datasets/(\d+)/$")
PROJECT_URL = re.compile(r"/projects/(\d+)/$")


class Product:
    """`manage.py up` in its own process group, its output in a log file."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {key: value for key, value in os.environ.items()
               if key not in {"DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "MEDIA_ROOT", "STATIC_ROOT",
                              "VINTNER_UPLOAD_DIR", "VINTNER_PRODUCTION"}}
        env.update(
            DJANGO_SETTINGS_MODULE="webapp.settings",
            VINTNER_DATA_DIR=str(data_dir),
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nobody answers there: `up` starts its own
            VINTNER_ADMIN_USERNAME="admin",
            VINTNER_ADMIN_PASSWORD=ADMIN_PASSWORD,
            TEAMS_PER_USER="1",  # the site lets each account make a team (by default only its admins do)
            PYTHONUNBUFFERED="1",
        )
        self.log_path = data_dir.parent / "up.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "manage.py", "up", "--port", str(self.port)], cwd=ROOT,
                                        env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def healthy(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"manage.py up exited ({self.process.returncode}):\n{self.tail()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def token(self, username: str, password: str) -> str:
        response = requests.post(f"{self.url}/api/v1/auth/token/", data={"username": username, "password": password},
                                 timeout=10)
        assert response.ok, response.text
        return response.json()["token"]

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C: up stops daphne, the worker, then Redis
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    product = Product(tmp_path_factory.mktemp("journey") / "data")
    try:
        wait_for(product.healthy, timeout=180, what="/healthz of `manage.py up`", interval=0.5)
        admin = {"Authorization": f"Token {product.token('admin', ADMIN_PASSWORD)}"}

        def worker_online() -> bool:
            if not product.alive():
                raise RuntimeError(f"manage.py up exited:\n{product.tail()}")
            workers = requests.get(f"{product.url}/api/v1/workers/", headers=admin, timeout=5).json()
            workers = workers["results"] if isinstance(workers, dict) else workers
            return any(w["online"] and w["hostname"].startswith("local@") and w["queues"] for w in workers)

        wait_for(worker_online, timeout=180, what="the worker to be online", interval=1)
    except BaseException:
        print(f"--- manage.py up, last lines ---\n{product.tail()}")
        product.stop()
        raise
    yield product
    product.stop()
    if product.process.returncode not in (0, -signal.SIGINT):
        print(f"--- manage.py up exited {product.process.returncode}, last lines ---\n{product.tail()}")


@pytest.fixture
def log_on_failure(product, request):
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        print(f"--- manage.py up, last lines ---\n{product.tail(200)}")


def new_page(browser) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.set_default_timeout(30_000)
    return context.new_page()


def add_user_in_admin(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/auth/user/add/")
    page.locator("#id_username").fill(username)
    usable = page.locator("input[name=usable_password][value=true]")  # Django 5.1+: "Password-based authentication"
    if usable.count():
        usable.check()
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist")).to_contain_text(username)


def red_picture(path: Path) -> Path:
    image = Image.new("RGB", (16, 16))
    image.putdata([(200, (i * 37) % 90, (i * 53) % 90) for i in range(16 * 16)])
    image.save(path)
    return path


def websocket_refused(url: str, token: str) -> bool:
    """Whether a handshake with `Authorization: Token <key>` is refused, or closed before a word."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url, additional_headers={"Authorization": f"Token {token}"}, open_timeout=10) as socket:
            try:
                socket.recv(timeout=3)
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False  # open, and waiting for events
            return False  # it sent something
    except InvalidStatus as refusal:
        return refusal.response.status_code == 403


def test_the_whole_journey(product, browser, screenshots, tmp_path, log_on_failure):
    base = product.url
    started = time.monotonic()

    # The site admin adds the three accounts.
    admin = new_page(browser)
    sign_in(admin, base, "admin", ADMIN_PASSWORD)
    for username in ("alice", "bob", "charlie"):
        add_user_in_admin(admin, base, username)
    admin.context.close()

    # Alice: a team, a project, bob as a member.
    page = new_page(browser)
    sign_in(page, base, "alice", PASSWORD)
    page.get_by_label("Name").fill("Colour Lab")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", name="Colour Lab", level=1)).to_be_visible()
    page.get_by_label("Name").fill("Colour sorter")
    page.get_by_label("Description").fill("Tells red, green and blue apart.")
    page.get_by_role("button", name="Create project").click()
    expect(by_testid(page, "project-name")).to_have_text("Colour sorter")
    project_id = int(PROJECT_URL.search(page.url).group(1))
    page.locator("nav.nav").get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members", level=1)).to_be_visible()
    page.get_by_label("Username or e-mail").fill("bob")
    page.locator("form", has=page.get_by_role("button", name="Add member")).get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator(".messages [role=status]")).to_contain_text("bob joined Colour Lab as member")

    # The dataset, uploaded through the page and imported by the worker.
    archive = make_zip(tmp_path / "colours.zip", colour_classes(per_class=48))
    page.goto(f"{base}/projects/{project_id}/")
    page.get_by_role("link", name="Upload dataset").click()
    page.get_by_label("Archive").set_input_files(archive)
    expect(page.get_by_label("Name")).to_have_value("colours")
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url(DATASET_URL, timeout=60_000)
    dataset_id = int(DATASET_URL.search(page.url).group(1))
    expect(by_testid(page, "dataset-state")).to_have_text("ready", timeout=120_000)
    expect(by_testid(page, "image-count")).to_have_text("144")
    shot(page, screenshots, "journey-dataset")

    # Training through the form; the curves grow while it runs.
    by_testid(page, "train-on-dataset").click()
    form = by_testid(page, "train-form")
    expect(form.get_by_label("Dataset")).to_have_value(str(dataset_id))
    form.get_by_label("Model name").fill("colours")
    form.get_by_label("Architecture").select_option("small_cnn")
    form.get_by_label("Epochs", exact=True).fill("4")
    form.get_by_label("Batch size", exact=True).fill("8")
    form.get_by_label("Input size (px)").fill("16")
    form.get_by_label("Data-loader workers").fill("0")
    by_testid(page, "train-submit").click()
    page.wait_for_url(JOB_URL)
    train_job = int(JOB_URL.search(page.url).group(1))
    # An epoch's point drawn while the job page still says "running": live, not replayed at the end.
    page.wait_for_function(
        """() => Number(document.querySelector('[data-testid=chart-accuracy]').dataset.points) > 0
                 && document.querySelector('[data-testid=job-state]').textContent.trim() === 'running'""",
        polling=50, timeout=180_000)
    shot(page, screenshots, "journey-train-live")
    succeeded(page, 180_000)
    expect(by_testid(page, "train-epoch")).to_have_text("4/4")
    trained = artifact_link(page)

    # Conversion to OpenVINO IR, with the form's defaults.
    page.goto(f"{base}/artifacts/{trained}/")
    expect(by_testid(page, "convert-form")).to_be_visible()
    by_testid(page, "convert-submit").click()
    page.wait_for_url(JOB_URL)
    succeeded(page, 180_000)
    fp32 = artifact_link(page)

    # INT8, post-training, 20 calibration images: accuracy before and after.
    page.goto(f"{base}/artifacts/{fp32}/")
    form = by_testid(page, "quantize-form")
    expect(form.get_by_label("Dataset")).to_have_value(str(dataset_id))
    form.get_by_label("Post-training", exact=True).check()
    form.get_by_label("Calibration images").fill("20")
    by_testid(page, "quantize-submit").click()
    page.wait_for_url(JOB_URL)
    succeeded(page, 240_000)
    int8 = artifact_link(page)
    page.goto(f"{base}/artifacts/{int8}/")
    expect(by_testid(page, "artifact-precision")).to_have_text("int8")
    table = by_testid(page, "quantization-accuracy")
    expect(table).to_contain_text("FP32 (before)")
    expect(table).to_contain_text("INT8 (after)")
    top1 = table.locator("tr[data-row=top-1]")
    expect(top1.locator("[data-field=fp32]")).to_have_text(re.compile(r"\d.* %$"))
    expect(top1.locator("[data-field=int8]")).to_have_text(re.compile(r"\d.* %$"))

    # Benchmarks of both IRs, a second per measurement.
    for artifact in (int8, fp32):
        page.goto(f"{base}/artifacts/{artifact}/")
        form = by_testid(page, "benchmark-form")
        form.get_by_label("Seconds per measurement").fill("1")
        by_testid(page, "benchmark-submit").click()
        page.wait_for_url(JOB_URL)
        succeeded(page, 240_000)

    # The comparison: both IRs with figures, one best-for-latency badge.
    alice_token = product.token("alice", PASSWORD)
    model = requests.get(f"{base}/api/v1/artifacts/{int8}/", headers={"Authorization": f"Token {alice_token}"},
                         timeout=10).json()["model"]
    open_comparison(page, base, model, 50)  # a 29-image validation split: accuracy is coarse
    for artifact in (fp32, int8):
        row = page.locator(f"[data-testid=compare-row][data-artifact='{artifact}']")
        expect(row.locator("[data-field=latency]")).to_have_text(re.compile(r"^[\d.,]+ ms$"))
    expect(by_testid(page, "best-latency-badge")).to_have_count(1)
    shot(page, screenshots, "journey-compare")

    # Deploying the INT8 IR: the zip, and the page's program run beside model.xml on a red picture.
    open_deploy_page(page, base, int8)
    download_url = by_testid(page, "deploy-download").get_attribute("href")
    zipped = download(page, "deploy-download", tmp_path)
    folder = tmp_path / "deploy"
    zipfile.ZipFile(zipped).extractall(folder)
    assert {"model.xml", "model.bin"} <= {p.name for p in folder.iterdir()}
    (folder / "classify.py").write_text(by_testid(page, "snippet").text_content())
    printed = subprocess.run([sys.executable, "classify.py", str(red_picture(tmp_path / "red.png"))], cwd=folder,
                             capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[0].split("\t")[0] == "red", printed.stdout
    page.context.close()

    # Bob, of the same team, sees the project, the model and the comparison.
    page = new_page(browser)
    sign_in(page, base, "bob", PASSWORD)
    page.goto(f"{base}/projects/{project_id}/")
    expect(by_testid(page, "project-name")).to_have_text("Colour sorter")
    expect(page.locator("body")).to_contain_text("colours")
    assert page.goto(f"{base}/models/{model}/").status == 200
    expect(page.locator("body")).to_contain_text("colours")
    assert page.goto(f"{base}/models/{model}/compare/").status == 200
    expect(page.locator(f"[data-testid=compare-row][data-artifact='{int8}']")).to_be_visible()
    page.context.close()

    # Charlie, an outsider, finds none of it: pages, API, websocket.
    page = new_page(browser)
    sign_in(page, base, "charlie", PASSWORD)
    for path in (f"/projects/{project_id}/", f"/models/{model}/", f"/models/{model}/compare/",
                 f"/artifacts/{int8}/", download_url, f"/artifacts/{int8}/deploy/"):
        response = page.request.get(path if path.startswith("http") else f"{base}{path}")
        assert response.status == 404, (path, response.status)
    response = page.goto(f"{base}/projects/{project_id}/")
    assert response.status == 404
    expect(page.locator("body")).not_to_contain_text("Colour sorter")
    page.context.close()
    charlie_token = product.token("charlie", PASSWORD)
    for path in (f"/api/v1/projects/{project_id}/", f"/api/v1/artifacts/{int8}/"):
        response = requests.get(f"{base}{path}", headers={"Authorization": f"Token {charlie_token}"}, timeout=10)
        assert response.status_code == 404, (path, response.status_code)
    ws = f"ws://127.0.0.1:{product.port}/ws/jobs/{train_job}/"
    assert not websocket_refused(ws, alice_token)  # the same socket opens for alice's token
    assert websocket_refused(ws, charlie_token)

    print(f"journey took {time.monotonic() - started:.0f} s")
