"""The graph view of an OpenVINO IR or ONNX artifact in a real headless browser against daphne:
laid out by the dagre that Vintner serves itself (nothing loads from anywhere else), pan and
zoom, a click shows a node's attributes and shapes, the search finds operations, a cut graph
says so, and Charlie, in another team, gets a 404.

The artifacts are made directly, with the graph workers.pipeline.graphs makes of real tiny models:
this test is about the page, not the inspection job.
"""

import hashlib
import re
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests import model_builders as build
from tests.e2e.helpers import assert_hidden_from, by_testid, shot, sign_in
from tests.jobs_helpers import make_project
from webapp.registry.models import Artifact, Model
from workers.pipeline.formats import Prepared
from workers.pipeline.graphs import model_graph

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SELECTED = re.compile(r"\bselected\b")
MATCH = re.compile(r"\bmatch\b")


def published(model: Model, user, prepared: Prepared, *, graph: dict | None) -> Artifact:
    """A ready artifact of the prepared files, stored as the publishing step stores them."""
    files = sorted(path for path in prepared.folder.iterdir() if path.is_file())
    listing = [{"name": path.name, "size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
               for path in files]
    main = next(entry for entry in listing if entry["name"] == prepared.primary)
    inspection = {"format": prepared.format, "inputs": [], "outputs": [], "parameters": None, "precision": "fp32",
                  **({"graph_nodes": len(graph["nodes"])} if graph else {})}
    artifact = Artifact.objects.create(
        model=model, origin="uploaded", format=prepared.format, precision="fp32", source_names=[prepared.primary],
        ready_at=timezone.now(), files=listing, primary=prepared.primary, sha256=main["sha256"],
        size_bytes=sum(entry["size"] for entry in listing), created_by=user, inspection=inspection, graph=graph,
    )
    for path in files:
        default_storage.save(f"{artifact.storage_prefix}/{path.name}", ContentFile(path.read_bytes()))
    return artifact


def ir_artifact(model: Model, user, folder: Path) -> Artifact:
    build.openvino_ir(folder)
    prepared = Prepared(format="openvino_ir", folder=folder, primary="model.xml")
    return published(model, user, prepared, graph=model_graph(prepared))


def transform(page: Page) -> str:
    return page.locator("[data-testid=graph-canvas] .viewport").get_attribute("transform")


def open_graph(page: Page, base: str, artifact: Artifact) -> None:
    page.goto(f"{base}/artifacts/{artifact.id}/graph/")
    expect(by_testid(page, "graph-canvas")).to_have_attribute("data-ready", "true")


def node(page: Page, kind: str):
    return page.locator(f"[data-testid=graph-node][data-type={kind}]")


def test_alice_explores_an_ir_graph(live_server_url, page, alice, team_a, screenshots, tmp_path):
    base = live_server_url
    model = Model.objects.create(project=make_project(team_a, "Pet classifier"), name="tiny", created_by=alice)
    artifact = ir_artifact(model, alice, tmp_path / "ir")
    graph = artifact.graph
    operations = [entry for entry in graph["nodes"] if entry["kind"] != "const"]
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))

    sign_in(page, base, "alice")
    page.goto(f"{base}/artifacts/{artifact.id}/")
    by_testid(page, "graph-link").click()
    expect(by_testid(page, "graph-canvas")).to_have_attribute("data-ready", "true")
    expect(by_testid(page, "graph-title")).to_contain_text("tiny")
    expect(by_testid(page, "graph-truncated")).to_have_count(0)
    expect(by_testid(page, "graph-node")).to_have_count(len(operations))  # constants hidden at first
    for kind in ("Parameter", "Convolution", "Relu", "MatMul", "Result"):
        expect(node(page, kind)).to_be_visible()
    expect(page.locator("[data-testid=graph-canvas] .gedge text").first).to_have_text("1×3×32×32")  # shapes on edges
    expect(by_testid(page, "graph-legend")).to_contain_text("Convolution, MatMul")

    node(page, "Convolution").click()
    expect(node(page, "Convolution")).to_have_class(SELECTED)
    details = by_testid(page, "graph-details")
    expect(details.get_by_test_id("detail-type")).to_have_text("Convolution")
    expect(details.get_by_test_id("detail-name")).to_have_text("__module.features.0/aten::_convolution/Convolution")
    expect(details.get_by_test_id("detail-attrs")).to_contain_text("pads_begin")
    expect(details.get_by_test_id("detail-attrs")).to_contain_text("[1, 1]")
    expect(details.get_by_test_id("detail-outputs")).to_contain_text("[1×8×32×32] f32")
    expect(details.get_by_test_id("detail-inputs")).to_contain_text("Parameter x")
    expect(details.get_by_test_id("detail-inputs")).to_contain_text("[8×3×3×3] f32")  # weights: a hidden constant
    shot(page, screenshots, "artifact-graph")

    details.get_by_role("button", name="Parameter x").click()  # follow an input
    expect(details.get_by_test_id("detail-type")).to_have_text("Parameter")

    search = by_testid(page, "graph-search")
    search.fill("matmul")
    expect(by_testid(page, "graph-matches")).to_have_text("1 of 1")
    expect(page.locator("[data-testid=graph-node].match")).to_have_count(1)
    expect(node(page, "MatMul")).to_have_class(SELECTED)
    expect(node(page, "MatMul")).to_have_class(MATCH)
    expect(details.get_by_test_id("detail-type")).to_have_text("MatMul")
    search.fill("add")
    expect(page.locator("[data-testid=graph-node].match")).to_have_count(2)
    expect(by_testid(page, "graph-matches")).to_have_text("1 of 2")
    search.press("Enter")
    expect(by_testid(page, "graph-matches")).to_have_text("2 of 2")
    search.fill("no such op")
    expect(by_testid(page, "graph-matches")).to_have_text("none")
    search.press("Escape")
    expect(page.locator("[data-testid=graph-node].match")).to_have_count(0)

    by_testid(page, "graph-constants").check()
    expect(by_testid(page, "graph-node")).to_have_count(len(graph["nodes"]))
    expect(node(page, "Constant").first).to_be_visible()

    by_testid(page, "graph-fit").click()
    canvas = by_testid(page, "graph-canvas").bounding_box()
    middle = (canvas["x"] + canvas["width"] / 2, canvas["y"] + 30)
    page.wait_for_timeout(300)  # the fit's animation
    before = transform(page)
    page.mouse.move(*middle)
    page.mouse.wheel(0, -300)  # zoom in
    expect(page.locator("[data-testid=graph-canvas] .viewport")).not_to_have_attribute("transform", before)
    zoomed = transform(page)
    page.mouse.down()
    page.mouse.move(middle[0] + 80, middle[1] + 40, steps=5)
    page.mouse.up()
    assert transform(page) != zoomed  # panned

    assert not errors, errors
    assert all(url.startswith(base) for url in requests), [url for url in requests if not url.startswith(base)]


def test_a_cut_graph_says_so_and_models_without_a_graph_have_no_view(live_server_url, page, alice, team_a, tmp_path):
    base = live_server_url
    model = Model.objects.create(project=make_project(team_a, "Pet classifier"), name="tiny", created_by=alice)
    folder = tmp_path / "onnx"
    folder.mkdir()
    build.onnx_file(folder / "model.onnx")
    prepared = Prepared(format="onnx", folder=folder, primary="model.onnx")
    cut = published(model, alice, prepared, graph=model_graph(prepared, max_nodes=4))
    plain = published(model, alice, prepared, graph=None)

    sign_in(page, base, "alice")
    open_graph(page, base, cut)
    expect(by_testid(page, "graph-truncated")).to_contain_text("This model has 7 nodes: the view shows the first 4")
    expect(by_testid(page, "graph-node")).to_have_count(4)
    expect(node(page, "Conv")).to_be_visible()
    expect(node(page, "Gemm")).to_have_count(0)
    node(page, "Conv").click()
    attrs = by_testid(page, "graph-details").get_by_test_id("detail-attrs")
    expect(attrs).to_contain_text("f32 [8, 3, 3, 3] · features.0.weight")
    expect(by_testid(page, "graph-constants")).to_have_count(0)  # initializers are no nodes in ONNX

    page.goto(f"{base}/artifacts/{plain.id}/")
    expect(by_testid(page, "artifact-state")).to_have_text("ready")
    expect(by_testid(page, "graph-link")).to_have_count(0)
    assert page.request.get(f"{base}/artifacts/{plain.id}/graph/").status == 404


def test_outsiders_get_404(live_server_url, page, alice, charlie, team_a, team_c, tmp_path):
    model = Model.objects.create(project=make_project(team_a, "Secret project"), name="hush-net", created_by=alice)
    artifact = ir_artifact(model, alice, tmp_path / "ir")
    assert_hidden_from(page, live_server_url, charlie, [f"/artifacts/{artifact.id}/graph/"], name="hush-net")
