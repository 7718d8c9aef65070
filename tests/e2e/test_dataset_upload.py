"""Datasets as a person uses them: a real headless browser against daphne, a resumable (tus)
upload from the page, the real Celery worker importing the archive, live updates over the
job's websocket.

Alice uploads a zip of three class folders (and one broken PNG) from her project page, watches
the upload reach 100 %, watches the import run on the dataset page until the report appears by
itself, checks the class counts and the skipped file, and filters the gallery by one class.
A reload mid-upload resumes from where the server stopped, and an archive that is no archive
fails in words. Bob, in her team, sees a dataset; Charlie, in another team, gets 404s.

Screenshots go to the test's tmp_path; with VINTNER_SCREENSHOTS=1 to docs/screenshots/.
"""

import hashlib
import io
import random
import re
import zipfile
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.helpers import (assert_hidden_from, by_testid, cancel_job, hold_form_submit, record_live_panel,
                               seen_in_live_panel, shot, sign_in, start_long_probe)
from tests.jobs_helpers import make_project, wait_state
from tests.servers import wait_for
from webapp.datasets.models import Dataset, DatasetItem
from webapp.jobs.models import JobState
from webapp.teams.models import Team
from webapp.uploads.models import Upload

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DATASET_URL = re.compile(r"/datasets/(\d+)/$")
# Three classes of different sizes, so a wrong count shows; fish is small enough for a warning.
CLASSES = {"cat": 20, "dog": 16, "fish": 6}


@pytest.fixture
def project(team_a):
    return make_project(team_a, "Pet classifier")


def image_bytes(color: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def pets_zip(folder: Path) -> Path:
    """pets.zip: pets/<class>/NNN.(png|jpg), tiny images of varied sizes, and pets/cat/broken.png."""
    path = folder / "pets.zip"
    colors = {"cat": (200, 120, 40), "dog": (60, 90, 200), "fish": (30, 170, 120)}
    with zipfile.ZipFile(path, "w") as archive:
        for label, count in CLASSES.items():
            for n in range(count):
                fmt, suffix = ("PNG", "png") if n % 2 else ("JPEG", "jpg")
                size = (32, 24) if n % 3 else (24, 32)
                archive.writestr(f"pets/{label}/{n:03d}.{suffix}", image_bytes(colors[label], size, fmt))
        whole = image_bytes((255, 0, 0), (32, 32), "PNG")
        archive.writestr("pets/cat/broken.png", whole[: len(whole) // 2])  # cut off mid-file
    return path


def class_row(page: Page, label: str):
    return by_testid(page, "class-chart").locator(f'tbody tr[data-class="{label}"]')


def test_alice_uploads_a_zip_watches_it_import_and_browses_the_gallery(
    live_server_url, worker_host, page, alice, project, screenshots, tmp_path
):
    base = live_server_url
    archive = pets_zip(tmp_path)
    sign_in(page, base, "alice")
    probe_id = start_long_probe(page, base, alice, project)

    page.goto(f"{base}/projects/{project.id}/")
    page.get_by_role("link", name="Upload dataset").click()
    expect(page.get_by_role("heading", name="Upload a dataset")).to_be_visible()
    page.get_by_label("Archive").set_input_files(archive)
    expect(page.get_by_label("Name")).to_have_value("pets")  # named after the file
    expect(page.get_by_label("Validation fraction")).to_have_value("0.2")

    hold_form_submit(page)  # to see the finished upload before the form leaves
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_function("window.__held")
    expect(by_testid(page, "upload-percent")).to_have_text("100%")
    expect(by_testid(page, "upload-progress")).to_have_js_property("value", 1)
    expect(by_testid(page, "upload-bytes")).to_have_text(re.compile(r"^(\d+ kB) of \1$"))
    expect(by_testid(page, "upload-error")).to_be_hidden()
    expect(page.get_by_role("button", name="Uploading…")).to_be_disabled()
    sent = page.evaluate("Object.fromEntries(new FormData(window.__held))")
    assert re.fullmatch(r"[0-9a-f-]{36}", sent["upload"]) and re.fullmatch(r"[0-9a-f]{64}", sent["sha256"])
    assert (sent["name"], sent["val_fraction"], sent["seed"]) == ("pets", "0.2", "0")
    shot(page, screenshots, "dataset-upload")
    page.evaluate("window.__release()")

    # The dataset page while the import waits for the worker, then follows it live.
    page.wait_for_url(DATASET_URL)
    dataset = Dataset.objects.get(id=int(DATASET_URL.search(page.url).group(1)))
    assert dataset.archive_name == "pets.zip"
    assert dataset.upload.length == archive.stat().st_size
    assert dataset.archive_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest() == sent["sha256"]
    expect(by_testid(page, "dataset-state")).to_have_text("importing")
    expect(by_testid(page, "feed-status")).to_have_attribute("data-state", "live")
    expect(by_testid(page, "import-stage")).to_have_text("waiting for a worker")
    shot(page, screenshots, "dataset-importing")
    record_live_panel(page, "import")
    cancel_job(page, base, alice, probe_id)

    expect(by_testid(page, "dataset-state")).to_have_text("ready", timeout=60_000)
    expect(by_testid(page, "class-chart")).to_be_visible()
    assert page.evaluate("window.__notReloaded") is None  # the page reloaded itself for the report
    seen = seen_in_live_panel(page)
    # A small import may come in one batch: some stage, a partial bar and log lines were shown.
    assert re.search(r"stage:(unpacking|validating|publishing)\|", seen), seen
    assert re.search(r"progress:0\.[1-9]", seen), seen
    assert re.search(r"log:[1-9]", seen), seen
    expect(by_testid(page, "import-panel")).to_have_count(0)

    # The report: counts per class and split, the generated split, the broken file, a warning.
    dataset.refresh_from_db()
    assert dataset.state == "ready"
    rows = {row["name"]: row for row in dataset.report["classes"]}
    for label, count in CLASSES.items():
        row = class_row(page, label)
        expect(row.locator("[data-split=total]")).to_have_text(str(count))
        assert rows[label]["total"] == count
        for split in ("train", "val", "test"):
            expect(row.locator(f"[data-split={split}]")).to_have_text(str(rows[label][split]))
        assert rows[label]["val"] > 0 and rows[label]["train"] + rows[label]["val"] == count
    expect(by_testid(page, "class-chart").locator("tbody tr")).to_have_count(len(CLASSES))
    expect(by_testid(page, "image-count")).to_have_text(str(sum(CLASSES.values())))
    expect(by_testid(page, "split-source")).to_have_text("generated, seed 0, val fraction 0.2")
    skipped = by_testid(page, "skipped")
    expect(skipped).to_contain_text("pets/cat/broken.png")
    expect(skipped).to_contain_text(dataset.report["skipped"][0]["reason"])
    expect(by_testid(page, "dataset-warnings")).to_contain_text("fish")
    expect(by_testid(page, "preview").locator("img")).to_have_count(12)
    page.wait_for_function("[...document.querySelectorAll('[data-testid=preview] img')].every(i => i.naturalWidth > 0)")
    shot(page, screenshots, "dataset-report")

    # The gallery, filtered to one class: only its thumbnails, and they really load.
    by_testid(page, "gallery-link").click()
    expect(by_testid(page, "gallery-item")).to_have_count(sum(CLASSES.values()))
    page.get_by_label("Class").select_option("dog")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"label=dog"))
    items = by_testid(page, "gallery-item")
    expect(items).to_have_count(CLASSES["dog"])
    assert set(items.evaluate_all("items => items.map(item => item.dataset.label)")) == {"dog"}
    for item in items.all():
        item.scroll_into_view_if_needed()  # the thumbnails load lazily
        expect(item).to_contain_text("dog")
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=gallery-item] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, screenshots, "dataset-gallery")


CHUNK = 32 * 2**20  # static/js/dataset_upload.js


def test_a_reload_mid_upload_resumes_where_it_stopped_and_a_bad_archive_fails_in_words(
    live_server_url, worker_host, page, alice, project, tmp_path, screenshots
):
    """The first chunk arrives, the second never does (held here), Alice reloads (the page warns
    her), chooses the file again, and the upload continues from the server's offset. The file is
    no archive at all, so the import fails, and the page says why."""
    base = live_server_url
    junk = tmp_path / "photos.zip"
    junk.write_bytes(random.Random(7).randbytes(CHUNK + 8 * 2**20))
    sign_in(page, base, "alice")
    page.goto(f"{base}/projects/{project.id}/datasets/new/")

    patches, held, dropping = [], [], [True]

    def on_patch(route):
        patches.append(int(route.request.headers["upload-offset"]))
        if dropping[0] and len(patches) > 1:
            held.append(route)  # the connection "drops" here: this chunk never arrives
        else:
            route.continue_()

    page.route("**/api/v1/uploads/*/",
               lambda route: on_patch(route) if route.request.method == "PATCH" else route.continue_())
    page.get_by_label("Archive").set_input_files(junk)
    page.get_by_role("button", name="Upload and import").click()
    first_chunk = CHUNK / junk.stat().st_size
    page.wait_for_function(f"document.querySelector('[data-testid=upload-progress]').value >= {first_chunk}")
    expect(by_testid(page, "upload-pause")).to_be_visible()
    # Playwright runs route handlers only while this thread is in one of its calls: wait in one.
    wait_for(lambda: held or page.wait_for_timeout(50), timeout=30, what="the second chunk to be sent")
    assert patches == [0, CHUNK]
    upload = Upload.objects.get(offset=CHUNK, created_by=alice)
    by_testid(page, "upload-pause").click()
    expect(by_testid(page, "upload-pause")).to_have_text("Resume")
    expect(by_testid(page, "upload-phase")).to_have_text("· paused")

    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))
    page.reload()
    assert dialogs == ["beforeunload"]  # leaving mid-upload asks first
    assert Upload.objects.get(id=upload.id).offset == CHUNK
    dropping[0] = False

    page.get_by_label("Archive").set_input_files(junk)
    page.get_by_role("button", name="Upload and import").click()
    expect(by_testid(page, "upload-resume")).to_have_text("Resuming: 34 MB of 42 MB already uploaded.")
    page.wait_for_url(DATASET_URL)
    assert patches[2:] == [CHUNK]  # only the rest was sent, to the same upload
    dataset = Dataset.objects.get(id=int(DATASET_URL.search(page.url).group(1)))
    assert dataset.upload_id == upload.id

    expect(by_testid(page, "dataset-state")).to_have_text("failed", timeout=60_000)
    job = wait_state(dataset.import_job_id, JobState.FAILED, timeout=5)
    expect(by_testid(page, "dataset-error")).to_have_text(job.error)
    expect(by_testid(page, "dataset-error")).to_contain_text("not a zip or tar archive")
    expect(page.get_by_role("button", name="Retry import")).to_be_visible()
    shot(page, screenshots, "dataset-failed")


def test_an_upload_over_the_quota_is_refused_in_words_and_the_form_stays_usable(
    live_server_url, page, alice, team_a, project, tmp_path
):
    Team.objects.filter(id=team_a.id).update(storage_quota_gb=1)
    Dataset.objects.create(project=project, name="everything", archive_name="all.zip", archive_sha256="",
                           imported_at=timezone.now(), size_bytes=2**30)  # the quota, used up
    sign_in(page, live_server_url, "alice")
    page.goto(f"{live_server_url}/projects/{project.id}/datasets/new/")
    page.get_by_label("Archive").set_input_files(pets_zip(tmp_path))
    page.get_by_role("button", name="Upload and import").click()

    error = by_testid(page, "upload-error")
    expect(error).to_contain_text("storage quota left")  # the server's own sentence
    expect(error).to_have_attribute("role", "alert")
    expect(page.get_by_label("Name")).to_be_enabled()
    expect(page.get_by_role("button", name="Retry upload")).to_be_enabled()
    expect(by_testid(page, "upload-pause")).to_be_hidden()
    assert not Upload.objects.exists() and Dataset.objects.count() == 1


def ready_dataset(project, user) -> Dataset:
    """A published dataset, made directly: this test is about who may see it, not the import."""
    dataset = Dataset.objects.create(
        project=project, name="grapes", created_by=user, archive_name="grapes.zip", archive_sha256="0" * 64,
        imported_at=timezone.now(), image_count=1, classes=["red", "white"],
        report={"layout": "class-folders", "split": {"source": "archive"}, "images": 1,
                "classes": [{"name": "red", "train": 1, "val": 0, "test": 0, "total": 1}],
                "skipped": [], "skipped_count": 0, "warnings": []},
    )
    DatasetItem.objects.create(dataset=dataset, index=0, path="train/red/1.jpg", thumb="thumbs/000000.jpg",
                               label="red", split="train", width=8, height=8, mode="RGB", format="JPEG")
    default_storage.save(f"{dataset.storage_prefix}/thumbs/000000.jpg",
                         ContentFile(image_bytes((150, 0, 40), (8, 8), "JPEG")))
    return dataset


def test_team_members_see_a_dataset_and_outsiders_get_404(
    live_server_url, page, alice, bob, charlie, project, team_c, screenshots
):
    base = live_server_url
    dataset = ready_dataset(project, alice)
    pages = [f"/datasets/{dataset.id}/", f"/datasets/{dataset.id}/gallery/", f"/datasets/{dataset.id}/thumbs/0.jpg"]

    sign_in(page, base, "bob")
    page.goto(f"{base}/projects/{project.id}/")
    row = by_testid(page, "dataset-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("grapes v1")
    expect(row).to_contain_text("ready")
    expect(page.get_by_role("link", name="Upload dataset")).to_be_visible()  # members may upload
    shot(page, screenshots, "project-datasets")
    row.get_by_role("link").click()
    expect(by_testid(page, "dataset-state")).to_have_text("ready")
    expect(by_testid(page, "dataset-name")).to_contain_text("grapes")
    page.goto(f"{base}{pages[1]}")
    expect(by_testid(page, "gallery-item")).to_have_count(1)
    thumb = page.request.get(f"{base}{pages[2]}")
    assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"

    assert_hidden_from(page, base, charlie, pages, name="grapes")
