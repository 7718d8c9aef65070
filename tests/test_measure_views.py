"""The measure pages with rows made directly in the database (no worker): the benchmark and evaluate
forms, the performance page, the comparison's picks, the deployment page and classify.py, and who
may see them. Benchmark and evaluation results are written by hand in the shape the jobs store."""

import html
import re
from datetime import timedelta
from importlib.metadata import version

import pytest
from django.utils import timezone

from tests.conftest import make_user
from tests.helpers import COLOURS, make_artifact, make_dataset, make_model, signed_in
from tests.jobs_helpers import make_project
from webapp.jobs.models import Job, JobState
from webapp.jobs.selectors import inputs_of_job
from webapp.optimize.deploy import snippet
from webapp.registry.models import Artifact, Origin
from webapp.teams.models import Membership, Role

pytestmark = pytest.mark.django_db
XEON = "Intel(R) Xeon(R) Platinum 8480+"
EPYC = "AMD EPYC 7R13 Processor"
HOSTS = {
    XEON: {"cpu": XEON, "isa": ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_int8", "amx_tile"],
           "physical_cores": 2, "logical_cores": 4, "openvino": "2026.4.1", "device": "CPU", "device_name": XEON},
    EPYC: {"cpu": EPYC, "isa": ["sse4_2", "avx", "avx2", "fma"], "physical_cores": 8, "logical_cores": 16,
           "openvino": "2026.4.1", "device": "CPU", "device_name": EPYC},
}


# --- rows ----------------------------------------------------------------------------------------


def measurement(label: str, *, p50: float, fps: float, hint: str = "", engine: str = "openvino", batch: int = 1,
                streams: int = 1, requests: int = 1, precision: str = "f32", default: bool = False,
                spread: float = 0.04) -> dict:
    """One row as workers/pipeline/benchmark.py stores it: the medians of 3 rounds and their spread."""
    rounds = [{"fps": fps * factor, "p50": p50 / factor, "iterations": 160, "seconds": 0.33}
              for factor in (1 - spread / 2, 1.0, 1 + spread / 2)]
    return {"label": label, "engine": engine, "hint": hint, "batch": batch, "streams": streams, "requests": requests,
            "precision": "" if engine == "torch" else precision, "default_precision": default, "threads": 2,
            "iterations": 480, "seconds": 1.0, "fps": fps, "rounds": rounds, "spread": {"fps": spread, "p50": spread},
            "latency_ms": {"p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5, "mean": p50 * 1.05, "min": p50 * 0.9,
                           "max": p50 * 2}}


LAYERS = [
    {"name": "/features/0/Conv", "type": "Convolution", "exec_type": "brgconv_avx512_amx_I8", "precision": "I8",
     "status": "EXECUTED", "ms": 0.5, "share": 0.625},
    {"name": "/classifier/Gemm", "type": "FullyConnected", "exec_type": "jit_gemm_FP32", "precision": "FP32",
     "status": "EXECUTED", "ms": 0.2, "share": 0.25},
    {"name": "/features/1/Relu", "type": "Eltwise", "exec_type": "jit_avx512_I8", "precision": "I8",
     "status": "EXECUTED", "ms": 0.1, "share": 0.125},
    {"name": "/features/2/Reshape", "type": "Reshape", "exec_type": "unknown", "precision": "",
     "status": "NOT_RUN", "ms": 0.0, "share": 0.0},
]
LAYER_TYPES = [
    {"type": "Convolution", "ms": 0.5, "count": 1, "precisions": ["I8"], "share": 0.625},
    {"type": "FullyConnected", "ms": 0.2, "count": 1, "precisions": ["FP32"], "share": 0.25},
    {"type": "Eltwise", "ms": 0.1, "count": 1, "precisions": ["I8"], "share": 0.125},
    {"type": "Reshape", "ms": 0.0, "count": 1, "precisions": [], "share": 0.0},
]


def benchmark(artifact, *, latency: float, fps: float, cpu: str = XEON, torch: tuple | None = None,
              reference: Artifact | None = None, layers: bool = False, age_days: float = 0,
              bf16: tuple | None = None, load: dict | None = None) -> Job:
    """A succeeded benchmark job of the artifact, its result as workers/tasks.py `benchmark` writes it;
    `bf16` (latency, fps): the rows at the device's default precision."""
    measurements = [measurement("latency hint, f32", hint="latency", p50=latency, fps=1000 / latency),
                    measurement("throughput hint, f32", hint="throughput", p50=latency * 3, fps=fps, streams=2,
                                requests=4)]
    if bf16:
        measurements += [
            measurement("latency hint, device default precision (bf16)", hint="latency", p50=bf16[0],
                        fps=1000 / bf16[0], precision="bf16", default=True, spread=0.25),
            measurement("throughput hint, device default precision (bf16)", hint="throughput", p50=bf16[0] * 3,
                        fps=bf16[1], streams=2, requests=4, precision="bf16", default=True)]
    host = {**HOSTS[cpu], "default_precision": "bf16" if bf16 else "f32"}
    result = {"host": host, "shape": [1, 3, 16, 16], "measurements": measurements, "rounds": 3,
              "load": load or {"other_cpu_share": 0.02, "max_spread": 0.04, "noisy": False, "reasons": []},
              "layers": LAYERS if layers else [], "layer_types": LAYER_TYPES if layers else [],
              "layer_profile": {"runs": 30, "requests": 1, "streams": 1, "threads": 2, "precision": "f32",
                                "hint": "latency", "total_ms": 0.8, "profiled_latency_ms": 0.85} if layers else {},
              "artifact": artifact.id, "reference": reference.id if reference else None, "latency_ms": latency, "fps": fps}
    if torch:
        torch_latency, torch_fps = torch
        result["torch"] = measurement("torch eager", engine="torch", p50=torch_latency, fps=torch_fps, streams=0)
        result.update(torch_latency_ms=torch_latency, torch_fps=torch_fps, speedup_latency=torch_latency / latency,
                      speedup_throughput=fps / torch_fps)
    finished = timezone.now() - timedelta(days=age_days)
    return Job.objects.create(
        project=artifact.model.project, kind="benchmark", queue="optimize", state=JobState.SUCCEEDED,
        params={"artifact": artifact.id, "device": "CPU", "seconds": 1.0, "hints": ["latency", "throughput"],
                "matrix": [], "layer_counters": layers, "torch_reference": bool(torch),
                "reference": reference.id if reference else None},
        result=result, progress=1.0, started_at=finished, finished_at=finished,
    )


def evaluation(artifact, dataset, *, confusion: list[list[int]], split: str = "val") -> Job:
    images = sum(map(sum, confusion))
    top1 = sum(confusion[i][i] for i in range(len(confusion))) / images
    result = {"artifact": artifact.id, "dataset": dataset.id, "dataset_name": str(dataset), "split": split,
              "labels": COLOURS, "images": images, "top1": top1, "top5": 1.0, "confusion": confusion}
    return Job.objects.create(
        project=artifact.model.project, kind="evaluate", queue="optimize", state=JobState.SUCCEEDED,
        params={"artifact": artifact.id, "dataset": dataset.id, "split": split}, result=result, progress=1.0,
        finished_at=timezone.now(),
    )


def accuracy(top1: float, fp32: float = 0.95) -> dict:
    """An INT8 artifact's metrics as the quantize job stores them (only what the pages read)."""
    return {"quantization": {"method": "ptq", "dataset": None, "dataset_name": "colours v1", "calibration_images": 20,
                             "fp32": {"images": 9, "top1": fp32, "top5": 1.0},
                             "int8": {"images": 9, "top1": top1, "top5": 1.0}, "drop": fp32 - top1}}


@pytest.fixture
def project(team_a):
    return make_project(team_a, "Colour sorter")


@pytest.fixture
def model(project, alice):
    return make_model(project, alice)


@pytest.fixture
def trained(model):
    return make_artifact(model, fmt="state_dict", origin=Origin.TRAINED,
                         metrics={"training": {"final": {"val_top1": 0.95}}})


@pytest.fixture
def fp32(model, trained):
    return make_artifact(model, parent=trained)


@pytest.fixture
def int8(model, fp32):
    return make_artifact(model, precision="int8", origin=Origin.QUANTIZED, parent=fp32, metrics=accuracy(0.92))


@pytest.fixture
def dataset(project):
    return make_dataset(project)


def text(response) -> str:
    """The page's text with tags dropped and entities unescaped, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def said(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- forms ---------------------------------------------------------------------------------------


def test_it_shows_the_benchmark_and_evaluate_forms_on_a_ready_artifact(alice, fp32, trained, dataset):
    response = signed_in(alice).get(f"/artifacts/{fp32.id}/")
    body = response.content.decode()
    assert response.status_code == 200
    for testid in ("benchmark-form", "evaluate-form", "measure-summary", "performance-button", "deploy-link"):
        assert f'data-testid="{testid}"' in body, testid
    assert f'action="/artifacts/{fp32.id}/benchmark/"' in body and f'action="/artifacts/{fp32.id}/evaluate/"' in body
    assert f'<option value="{dataset.id}" selected>' in body  # the dataset of the model's classes, chosen
    assert f"#{trained.id} (PyTorch state_dict) measured in the same job" in text(response)
    # a PyTorch artifact: torch eager is its own figure; no deployment (IR only)
    body = signed_in(alice).get(f"/artifacts/{trained.id}/").content.decode()
    assert 'data-testid="benchmark-form"' in body and 'data-testid="deploy-link"' not in body
    assert 'data-testid="benchmark-hint-latency"' not in body


def test_a_viewer_sees_the_figures_but_no_forms(team_a, fp32):
    viewer = make_user("dave")
    Membership.objects.create(team=team_a, user=viewer, role=Role.VIEWER)
    body = signed_in(viewer).get(f"/artifacts/{fp32.id}/").content.decode()
    assert 'data-testid="measure-summary"' in body and 'data-testid="benchmark-form"' not in body
    assert signed_in(viewer).post(f"/artifacts/{fp32.id}/benchmark/", {"seconds": 1, "hints": "latency"}).status_code == 403
    assert not Job.objects.exists()


def test_the_benchmark_form_starts_a_job_with_its_settings(alice, fp32, trained):
    response = signed_in(alice).post(f"/artifacts/{fp32.id}/benchmark/", {
        "device": "CPU", "seconds": "1", "hints": ["latency"], "matrix": "4x2\n 8 × 1 \n\n", "torch_reference": "on"})
    job = Job.objects.get(kind="benchmark")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    params = job.params
    assert (params["artifact"], params["seconds"], params["hints"], params["device"]) == (fp32.id, 1.0, ["latency"], "CPU")
    assert params["matrix"] == [{"batch": 4, "streams": 2}, {"batch": 8, "streams": 1}]
    assert params["layer_counters"] is False  # unchecked: not sent
    assert params["torch_reference"] is True and params["reference"] == trained.id
    assert inputs_of_job(job)["artifacts"] == [fp32.id, trained.id] and job.queue == "optimize"
    assert job.model is None  # it measures; it makes no artifact


@pytest.mark.parametrize("fields, words", [
    ({"matrix": "4 by 2"}, "matrix: “4 by 2” is not a batch × streams point"),
    ({"matrix": "999x1"}, "matrix: “999x1”: the batch is 1 to 256"),
    ({"matrix": "9" * 5000 + "x1"}, f"matrix: “{'9' * 40}” is not a batch × streams point"),  # int() refused it: a 500
    ({"hints": []}, "hints: Choose a hint or a batch × streams point to measure."),
    ({"seconds": "0"}, "seconds: Ensure this value is greater than or equal to 1."),
])
def test_a_refused_benchmark_says_why_and_makes_no_job(alice, fp32, fields, words):
    body = {"seconds": "1", "hints": ["latency", "throughput"], **fields}
    response = signed_in(alice).post(f"/artifacts/{fp32.id}/benchmark/", body, follow=True)
    assert response.redirect_chain[0][0] == f"/artifacts/{fp32.id}/#benchmark"
    assert any(words in message for message in said(response)), said(response)
    assert not Job.objects.exists()


def test_the_evaluate_form_starts_a_job_on_the_split(alice, fp32, dataset):
    response = signed_in(alice).post(f"/artifacts/{fp32.id}/evaluate/", {"dataset": dataset.id, "split": "val"})
    job = Job.objects.get(kind="evaluate")
    assert response["Location"] == f"/jobs/{job.id}/"
    assert job.params == {"artifact": fp32.id, "dataset": dataset.id, "split": "val", "max_length": None}
    assert inputs_of_job(job) == {"artifacts": [fp32.id], "datasets": [dataset.id]}


@pytest.mark.parametrize("case, words", [
    ("other classes", "dataset: The dataset's classes do not map onto the model's labels by name. Model “colours” has "
                      "the labels blue, green, red; dataset “shapes v1” has the classes circle, square (circle, square not "
                      "among the model's)."),
    ("no test split", "dataset: “colours v1” has no test images to evaluate on"),
    ("none chosen", "dataset: Choose a dataset to evaluate on."),
])
def test_an_evaluation_on_a_bad_dataset_says_why_and_makes_no_job(alice, project, fp32, dataset, case, words):
    shapes = make_dataset(project, ["circle", "square"], name="shapes")
    body = {"other classes": {"dataset": shapes.id}, "no test split": {"dataset": dataset.id, "split": "test"},
            "none chosen": {"dataset": ""}}[case]
    response = signed_in(alice).post(f"/artifacts/{fp32.id}/evaluate/", body, follow=True)
    assert response.redirect_chain[0][0] == f"/artifacts/{fp32.id}/#evaluate"
    assert any(message.startswith(words) for message in said(response)), said(response)
    assert f"<li class=\"message error\" role=\"status\">{html.escape(said(response)[0])}" in response.content.decode()
    assert not Job.objects.exists()


def test_a_dataset_of_another_team_is_not_found(alice, team_c, fp32):
    theirs = make_dataset(make_project(team_c, "Theirs"))
    assert signed_in(alice).post(f"/artifacts/{fp32.id}/evaluate/", {"dataset": theirs.id}).status_code == 404
    assert not Job.objects.exists()


# --- the performance page ------------------------------------------------------------------------


def test_the_performance_page_shows_the_latest_benchmark_its_host_and_speedups(alice, trained, int8):
    earlier = benchmark(int8, latency=1.5, fps=900, cpu=EPYC, age_days=2)
    latest = benchmark(int8, latency=0.8, fps=2400, torch=(3.04, 400), reference=trained, layers=True)
    response = signed_in(alice).get(f"/artifacts/{int8.id}/performance/")
    assert response.status_code == 200
    page, body = text(response), response.content.decode()
    assert f'data-testid="benchmark-card" data-job="{latest.id}"' in body
    assert XEON in page and "OpenVINO 2026.4.1" in page and "2 cores, 4 threads" in page
    for flag in ("AMX-INT8", "AVX-512 VNNI", "AVX-512"):  # the INT8 extensions, emphasised
        assert re.search(rf'<li class="isa-flag key"[^>]*>{flag}</li>', body), flag
    assert '<li class="isa-flag" title="avx2" data-flag="avx2">AVX2</li>' in body
    assert "AMX: INT8 and BF16 matrix multiplication in hardware tiles" in page
    assert "3.8× lower latency than torch eager on this host (0.800 ms against 3.04 ms, p50)." in page
    assert "6.0× the throughput of torch eager on this host (2,400 against 400 images/s)." in page
    # the measurements: what, batch, streams, requests, images/s, p50/p90/p99; torch eager last
    rows = re.findall(r'<tr data-testid="measurement-row".*?</tr>', body, re.S)
    assert len(rows) == 3 and 'data-engine="torch"' in rows[2] and "Torch eager, 2 threads" in rows[2]
    cells = [html.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", rows[1], re.S)]
    assert cells == ["Throughput hint — INT8 model, f32", "1", "2", "4", "2,400", "2.40", "2.88", "3.60", "3",
                     "4.0 %", "4.0 %"]
    # layer types with their share and the precisions that ran; the layers table sorts
    assert "Layer time by the precision the kernels ran in: I8 75.0 %, FP32 25.0 %" in page
    assert re.search(r'<tr data-type="Convolution">.*?width: 62.5%.*?62.5 %.*?>I8<', body, re.S)
    headers = re.findall(r'<th scope="col"[^>]*data-sort="(\w+)"[^>]*><button type="button" class="sort">([^<]+)</button>', body)
    assert headers == [("text", "Name"), ("text", "Type"), ("text", "Precision"), ("number", "Time (ms)"),
                       ("number", "Share"), ("text", "Status")]
    assert 'data-sortable data-testid="layers"' in body and "js/sortable_table.js" in body
    assert '<td class="end" data-value="0.500000">0.500</td>' in body
    assert len(re.findall(r'data-testid="layer-row"', body)) == 4 and 'class="not-run"' in body
    # the earlier benchmark, with its host and a link to its job; it can be shown in full
    other = re.search(rf'<tr data-testid="other-benchmark" data-job="{earlier.id}">.*?</tr>', body, re.S).group(0)
    assert f'href="/jobs/{earlier.id}/"' in other and EPYC in other and "1.50" in other
    shown = signed_in(alice).get(f"/artifacts/{int8.id}/performance/?benchmark={earlier.id}")
    assert f'data-job="{earlier.id}"' in shown.content.decode() and "An earlier benchmark" in text(shown)
    assert "No VNNI, AMX or AVX-512" in text(shown)


def test_fp32_is_f32_and_the_default_precision_is_a_row_of_its_own_with_rounds_and_spread(alice, fp32):
    benchmark(fp32, latency=2.0, fps=500, bf16=(1.2, 900), layers=True,
              load={"other_cpu_share": 0.35, "max_spread": 0.25, "noisy": True,
                    "reasons": ["latency hint, device default precision (bf16) spread 25% between rounds",
                                "other processes used 35% of the machine's CPU"]})
    response = signed_in(alice).get(f"/artifacts/{fp32.id}/performance/")
    page, body = text(response), response.content.decode()
    rows = re.findall(r'<tr data-testid="measurement-row".*?</tr>', body, re.S)
    names = [html.unescape(re.search(r"<th[^>]*>(.*?)</th>", row, re.S).group(1)) for row in rows]
    assert names == ["Latency hint — FP32 model, f32", "Throughput hint — FP32 model, f32",
                     "Latency hint — FP32 model, device default precision (bf16)",
                     "Throughput hint — FP32 model, device default precision (bf16)"]
    assert 'data-precision="bf16" data-default-precision' in rows[2] and "data-default-precision" not in rows[0]
    # every figure the median of its rounds, the spread beside it; the wide one marked, the host flagged
    assert 'data-field="rounds">3<' in rows[0] and 'data-field="spread-p50">25.0 %<' in rows[2]
    assert 'class=" noisy"' in rows[2] and "noisy" not in rows[0]
    assert re.search(r'data-testid="noisy-host">A noisy host: latency hint, device default precision \(bf16\) spread '
                     r"25% between rounds; other processes used 35% of the machine(&#x27;|')s CPU", body)
    assert "this device's default precision is bf16, measured in rows of their own" in page
    # the headline is the f32 row's, as the comparison takes it
    assert re.search(r'data-testid="perf-latency">2.00 ms<', body)
    # the layer table's total, and how its counters add up against the latency
    assert re.search(r'data-testid="layer-total"><th scope="row">Total</th><td></td><td class="end">0.800<', body)
    sums = text(response).split("How the counters add up:")[1]
    assert sums.startswith(" each layer's time is its mean over 30 profiled inferences of 1 infer request on 1 "
                           "stream (latency hint, batch 1, f32, 2 threads)")
    assert "summed over every request and stream that runs at once" in sums
    assert "Total: 0.800 ms per inference; the profiled inferences took 0.850 ms each, the rest being time outside" in sums
    assert "latency without profiling: 2.00 ms (p50)" in sums

    quiet = benchmark(fp32, latency=2.0, fps=500)
    body = signed_in(alice).get(f"/artifacts/{fp32.id}/performance/?benchmark={quiet.id}").content.decode()
    assert 'data-testid="noisy-host"' not in body and "data-default-precision" not in body


def test_a_model_from_onnx_has_no_vs_pytorch_figures(alice, model):
    onnx = make_artifact(model, fmt="onnx", origin=Origin.UPLOADED)
    ir = make_artifact(model, parent=onnx)
    benchmark(onnx, latency=3.0, fps=300)
    benchmark(ir, latency=1.0, fps=900)
    response, body, rows = compare_page(alice, model)
    assert re.search(r'data-field="speedup">—<', rows[ir.id]) and re.search(r'data-field="speedup">—<', rows[onnx.id])
    assert "the source" not in rows[onnx.id]
    compared = {row["artifact"]: row for row in signed_in(alice).get(f"/api/v1/models/{model.id}/compare/").json()["rows"]}
    assert compared[ir.id]["speedup_latency"] is None and compared[onnx.id]["speedup_latency"] is None
    page = signed_in(alice).get(f"/artifacts/{ir.id}/performance/").content.decode()
    assert 'data-testid="perf-speedup"' not in page and 'data-testid="speedups"' not in page


def test_a_benchmark_asked_for_by_no_id_shows_the_latest(alice, fp32):
    latest = benchmark(fp32, latency=2.0, fps=500)
    response = signed_in(alice).get(f"/artifacts/{fp32.id}/performance/?benchmark=²")  # "²".isdigit(): int() was a 500
    assert response.status_code == 200
    assert f'data-testid="benchmark-card" data-job="{latest.id}"' in response.content.decode()


def test_the_performance_page_shows_the_evaluations_as_a_confusion_heat_table(alice, fp32, dataset):
    evaluation(fp32, dataset, confusion=[[3, 0, 0], [0, 2, 1], [0, 0, 3]])
    response = signed_in(alice).get(f"/artifacts/{fp32.id}/performance/")
    page, body = text(response), response.content.decode()
    assert "Not benchmarked yet." in page
    assert "Top-1 88.9 %" in page and "Top-5 100.0 %" in page and "Images 9" in page
    assert f'href="/datasets/{dataset.id}/"' in body and "colours v1" in page
    table = re.search(r'<table class="table confusion".*?</table>', body, re.S).group(0)
    assert [html.unescape(c) for c in re.findall(r'<th scope="col" class="pred">(.*?)</th>', table)] == COLOURS
    green = re.search(r'<tr data-true="green">.*?</tr>', table, re.S).group(0)
    assert re.findall(r'data-count="(\d+)"', green) == ["0", "2", "1"]
    assert 'class="cell diag strong" style="--heat: 0.667000"' in green and 'class="cell off" style="--heat: 0.333000"' in green
    assert "66.7 %" in green  # recall of green
    assert "Most confused: green taken for red 1 time." in page


def test_the_job_page_of_a_benchmark_links_the_performance_page(alice, int8):
    job = benchmark(int8, latency=0.8, fps=2400)
    body = signed_in(alice).get(f"/jobs/{job.id}/").content.decode()
    assert f'<a href="/artifacts/{int8.id}/performance/" data-performance-url="/artifacts/0/performance/">performance of artifact #{int8.id}</a>' in body


# --- the comparison ------------------------------------------------------------------------------


def compare_page(user, model, **query):
    response = signed_in(user).get(f"/models/{model.id}/compare/", query)
    assert response.status_code == 200
    body = response.content.decode()
    rows = {int(m[1]): m[0] for m in re.finditer(r'<tr data-testid="compare-row" data-artifact="(\d+)".*?</tr>', body, re.S)}
    return response, body, rows


def test_the_comparison_picks_the_fastest_variant_within_the_allowed_drop(alice, model, trained, fp32, int8, dataset):
    evaluation(fp32, dataset, confusion=[[19, 1, 0], [0, 20, 0], [0, 0, 20]])  # 98.3 %
    benchmark(fp32, latency=2.0, fps=500, torch=(3.0, 330), reference=trained)
    benchmark(int8, latency=0.8, fps=1500, torch=(3.0, 330), reference=trained)  # faster; top-1 92 % (quantization)
    # int8 is 6.3 points below the best: not a candidate at 1 point
    response, body, rows = compare_page(alice, model)
    assert set(rows) == {trained.id, fp32.id, int8.id}
    assert 'class="best-latency best-throughput"' in rows[fp32.id] and 'data-testid="best-latency-badge"' in rows[fp32.id]
    assert "best-latency" not in rows[int8.id] and "best for" not in rows[int8.id]
    page = text(response)
    assert f"For the lowest latency: FP32 IR #{fp32.id} — 2.00 ms p50, top-1 98.3 %, the best known." in page
    assert (f"INT8 IR #{int8.id} is faster (0.800 ms p50) but its top-1 (92.0 %) is 6.3 points below the best, "
            f"more than the 1 point allowed.") in page
    assert f"For the highest throughput: FP32 IR #{fp32.id} — 500 images/s" in page
    # the row's figures, where they come from, the speedup over the PyTorch source
    assert "0.800 ms" in rows[int8.id] and "1,500" in rows[int8.id] and "3.8×" in rows[int8.id]
    assert "quantization, on colours v1 (val)" in rows[int8.id] and "evaluation on colours v1 (val)" in rows[fp32.id]
    assert "98.3 %" in rows[fp32.id] and "95.0 %" in rows[trained.id] and "training (val)" in rows[trained.id]
    # the source has no benchmark: "—" and a Benchmark button with the defaults
    assert re.search(r'data-field="latency">—<', rows[trained.id]) and 'data-testid="compare-benchmark"' in rows[trained.id]
    assert 'data-testid="compare-benchmark"' not in rows[int8.id]
    # bars: shortest latency first, the best one marked
    chart = re.search(r'data-testid="latency-chart".*?</section>', body, re.S).group(0)
    assert re.findall(r'<li class="(\w*)" data-artifact="(\d+)"', chart) == [("", str(int8.id)), ("best", str(fp32.id))]
    assert 'style="width: 40.000000%"' in chart and 'style="width: 100.000000%"' in chart
    assert 'data-testid="hosts-warning"' not in body

    # allowing 7 points, the INT8 IR is the pick for both goals
    response, body, rows = compare_page(alice, model, max_drop="7")
    assert 'class="best-latency best-throughput"' in rows[int8.id] and "best-latency" not in rows[fp32.id]
    assert (f"For the lowest latency: INT8 IR #{int8.id} — 0.800 ms p50, top-1 92.0 %, 6.3 points below the best "
            f"(98.3 %), within the 7 points allowed.") in text(response)
    assert 'name="max_drop" min="0" max="100" step="any" value="7"' in body


def test_a_faster_variant_three_points_worse_is_the_pick_only_when_the_drop_allows_it(alice, model, trained, fp32, int8):
    Artifact.objects.filter(id=fp32.id).update(metrics={"training": {"final": {"val_top1": 0.95}}})  # as good as its source
    benchmark(fp32, latency=2.0, fps=500)
    benchmark(int8, latency=0.8, fps=1500)  # 92 %: 3 points below 95 %
    _, _, rows = compare_page(alice, model, max_drop="1")
    assert "best-latency" in rows[fp32.id] and "best-latency" not in rows[int8.id]
    _, _, rows = compare_page(alice, model, max_drop="5")
    assert "best-latency" in rows[int8.id] and "best-throughput" in rows[int8.id] and "best-latency" not in rows[fp32.id]


def test_the_comparison_takes_top1_from_the_chosen_dataset_and_split(alice, project, model, fp32, int8, dataset):
    other = make_dataset(project, name="colours-b")
    evaluation(fp32, dataset, confusion=[[3, 0, 0], [0, 3, 0], [0, 0, 3]])
    evaluation(fp32, other, confusion=[[1, 2, 0], [0, 3, 0], [0, 0, 3]])
    _, body, rows = compare_page(alice, model, dataset=str(dataset.id), split="val")
    assert "100.0 %" in rows[fp32.id] and "evaluation on colours v1 (val)" in rows[fp32.id]
    assert f'<option value="{dataset.id}" selected>' in body
    _, _, rows = compare_page(alice, model, dataset=str(other.id))
    assert "77.8 %" in rows[fp32.id] and "colours-b v1" in rows[fp32.id]


def test_the_comparison_warns_when_figures_come_from_several_hosts(alice, model, fp32, int8):
    benchmark(fp32, latency=2.0, fps=500, cpu=EPYC)
    benchmark(int8, latency=0.8, fps=1500, cpu=XEON)
    response, body, _ = compare_page(alice, model)
    warning = re.search(r'data-testid="hosts-warning">(.*?)</p>', body, re.S).group(1)
    assert "2 different CPUs" in warning and EPYC in warning and XEON in html.unescape(warning)


def test_the_comparison_api_names_a_dataset_or_max_drop_that_is_no_number(alice, model, fp32):
    client = signed_in(alice)
    for query, field in [("max_drop=inf", "max_drop"), ("max_drop=nan", "max_drop"), ("dataset=²", "dataset"),
                         (f"dataset={2**70}", "dataset")]:  # inf reached the JSON answer: a 500
        response = client.get(f"/api/v1/models/{model.id}/compare/?{query}")
        assert response.status_code == 400 and list(response.json()) == [field], query


def test_a_bad_max_drop_is_said_and_the_default_used(alice, model, fp32):
    response, body, _ = compare_page(alice, model, max_drop="lots")
    assert "max_drop: A number of top-1 points." in said(response)
    assert 'name="max_drop" min="0" max="100" step="any" value="1"' in body


def test_the_benchmark_button_of_the_comparison_measures_with_the_defaults(alice, model, trained):
    _, body, rows = compare_page(alice, model)
    form = re.search(r'<form method="post" action="([^"]+)".*?</form>', rows[trained.id], re.S)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))
    hints = re.findall(r'name="hints" value="(\w+)"', form.group(0))
    response = signed_in(alice).post(form.group(1), {**fields, "hints": hints})
    job = Job.objects.get(kind="benchmark")
    assert response["Location"] == f"/jobs/{job.id}/"
    assert (job.params["seconds"], job.params["hints"], job.params["layer_counters"], job.params["torch_reference"]) == (
        10.0, ["latency", "throughput"], True, True)
    assert job.params["reference"] == trained.id


def test_the_model_page_links_the_comparison(alice, model, fp32):
    assert f'href="/models/{model.id}/compare/"' in signed_in(alice).get(f"/models/{model.id}/").content.decode()


# --- deployment ----------------------------------------------------------------------------------


def test_the_deploy_page_shows_the_zip_the_install_line_and_the_snippet(alice, int8):
    response = signed_in(alice).get(f"/artifacts/{int8.id}/deploy/")
    page, body = text(response), response.content.decode()
    assert response.status_code == 200
    assert f'href="/artifacts/{int8.id}/download/" data-testid="deploy-download" download' in body
    assert f"colours-openvino_ir-int8-{int8.id}.zip" in page
    for name in ("model.xml", "model.bin", "metadata.json", "SHA256SUMS"):
        assert f"<code>{name}</code>" in body
    assert f"pip install openvino=={version('openvino')} pillow numpy" in page
    code = re.search(r'<code id="snippet-code" data-testid="snippet">(.*?)</code>', body, re.S).group(1)
    assert html.unescape(code) == snippet(int8)
    assert f'href="/artifacts/{int8.id}/classify.py"' in body and 'data-copy="snippet-code"' in body
    assert re.search(r'data-testid="expected-output">blue\t0\.981\ngreen\t0\.012\nred\t0\.004\n</pre>', body)


def test_the_deploy_page_of_a_pytorch_artifact_points_at_the_model_irs(alice, trained, fp32, int8):
    response = signed_in(alice).get(f"/artifacts/{trained.id}/deploy/")
    body = response.content.decode()
    assert response.status_code == 200 and 'data-testid="deploy-not-ir"' in body and 'id="snippet-code"' not in body
    assert f'href="/artifacts/{fp32.id}/deploy/"' in body and f'href="/artifacts/{int8.id}/deploy/"' in body


def test_classify_py_downloads_as_a_python_file(alice, int8, trained):
    response = signed_in(alice).get(f"/artifacts/{int8.id}/classify.py")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/x-python; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="classify.py"'
    assert response.content.decode() == snippet(int8)
    assert signed_in(alice).get(f"/artifacts/{trained.id}/classify.py").status_code == 404


# --- access --------------------------------------------------------------------------------------


def test_another_teams_user_gets_404_on_every_page_and_form(charlie, team_c, model, trained, fp32, int8, dataset):
    benchmark(int8, latency=0.8, fps=1500, layers=True)
    outsider = signed_in(charlie)
    for url in (f"/artifacts/{int8.id}/performance/", f"/models/{model.id}/compare/", f"/artifacts/{int8.id}/deploy/",
                f"/artifacts/{int8.id}/classify.py"):
        assert outsider.get(url).status_code == 404, url
    assert outsider.post(f"/artifacts/{int8.id}/benchmark/", {"seconds": 1, "hints": "latency"}).status_code == 404
    assert outsider.post(f"/artifacts/{int8.id}/evaluate/", {"dataset": dataset.id}).status_code == 404
    assert Job.objects.filter(kind="evaluate").count() == 0 and Job.objects.filter(kind="benchmark").count() == 1


def test_anonymous_visitors_are_sent_to_sign_in(client, model, int8):
    for url in (f"/artifacts/{int8.id}/performance/", f"/models/{model.id}/compare/", f"/artifacts/{int8.id}/deploy/",
                f"/artifacts/{int8.id}/classify.py"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


def test_a_text_models_throughput_is_counted_in_rows_not_images(alice, model, trained, fp32, int8):
    model.modality = "text"
    model.save(update_fields=["modality"])
    benchmark(fp32, latency=2.0, fps=500, torch=(3.0, 330), reference=trained)
    benchmark(int8, latency=0.8, fps=1500, torch=(3.0, 330), reference=trained)
    pages = [text(signed_in(alice).get(f"/artifacts/{int8.id}/performance/")), text(compare_page(alice, model, max_drop="5")[0]),
             text(signed_in(alice).get(f"/artifacts/{int8.id}/"))]
    assert "4.5× the throughput of torch eager on this host (1,500 against 330 rows/s)." in pages[0]
    assert f"For the highest throughput: INT8 IR #{int8.id} — 1,500 rows/s" in pages[1]
    assert "1,500 rows/s" in pages[2]
    assert not any("images/s" in page for page in pages)
