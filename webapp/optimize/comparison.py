"""Every artifact of a model side by side: format, precision, size, top-1, latency, throughput and
the speedup over its PyTorch source, with the best choice for a latency and a throughput goal.

Figures come from the latest succeeded job of each kind for each artifact (benchmark, evaluate):
jobs are the record, nothing is copied. Top-1 is an evaluation's when there is one (on the chosen
dataset split, else the latest of any), else what the job that made the artifact measured on its
validation split (training, quantization). A text model's variants may be picked within a drop of
macro-F1 instead (`metric`), which an evaluation and a text quantization measure too. A speedup is only ever a ratio of two figures from one
host: the benchmark's own torch eager measurement of the PyTorch source, or the source's benchmark
when it ran on the same CPU.
"""

from dataclasses import dataclass, field

from webapp.jobs.models import Job, JobState
from webapp.registry.models import TORCH_FORMATS, Artifact, Model

DEFAULT_MAX_DROP = 0.01  # a variant is a candidate while its top-1 is within 1 point of the best
METRICS = ("accuracy", "macro_f1")  # what the drop is measured in: top-1 (accuracy), or macro-F1


@dataclass
class Row:
    artifact: Artifact
    top1: float | None = None
    top1_from: str = ""  # where the figure comes from, in words
    macro_f1: float | None = None  # from the same source as top1, where it measured one
    latency_ms: float | None = None  # p50 under the latency hint
    fps: float | None = None  # under the throughput hint
    cpu: str = ""
    isa: list[str] = field(default_factory=list)
    speedup_latency: float | None = None
    speedup_throughput: float | None = None
    benchmark: Job | None = None
    evaluation: Job | None = None
    best_latency: bool = False
    best_throughput: bool = False

    def as_dict(self) -> dict:
        a = self.artifact
        return {
            "artifact": a.id, "parent": a.parent_id, "origin": a.origin, "format": a.format, "precision": a.precision,
            "size_bytes": a.size_bytes, "top1": self.top1, "top1_from": self.top1_from,
            "macro_f1": self.macro_f1, "latency_ms": self.latency_ms,
            "fps": self.fps, "cpu": self.cpu, "isa": self.isa, "speedup_latency": self.speedup_latency,
            "speedup_throughput": self.speedup_throughput, "benchmark_job": self.benchmark.id if self.benchmark else None,
            "evaluation_job": self.evaluation.id if self.evaluation else None, "best_latency": self.best_latency,
            "best_throughput": self.best_throughput,
        }


@dataclass
class Comparison:
    rows: list[Row]
    max_drop: float
    best_latency: Row | None
    best_throughput: Row | None
    hosts: list[str]  # the CPUs the figures come from; more than one: compare with care
    metric: str = "accuracy"

    def as_dict(self) -> dict:
        return {"rows": [row.as_dict() for row in self.rows], "max_drop": self.max_drop, "metric": self.metric,
                "best_latency": self.best_latency.artifact.id if self.best_latency else None,
                "best_throughput": self.best_throughput.artifact.id if self.best_throughput else None,
                "hosts": self.hosts}


def compare(model: Model, *, dataset_id: int | None = None, split: str = "val",
            max_drop: float = DEFAULT_MAX_DROP, metric: str = "accuracy") -> Comparison:
    artifacts = [a for a in model.artifacts.select_related("job").order_by("created_at", "id") if a.state == "ready"]
    benchmarks = _latest(model, "benchmark", [a.id for a in artifacts])
    evaluations = _latest(model, "evaluate", [a.id for a in artifacts], dataset_id=dataset_id, split=split)
    rows = {a.id: row_for(a, benchmarks.get(a.id), evaluations.get(a.id)) for a in artifacts}
    for row in rows.values():  # parents come first: created before their children
        _inherit_top1(row, rows)
    for row in rows.values():
        _speedups(row, rows)
    candidates = _candidates(list(rows.values()), max_drop, metric)
    best_latency = min((r for r in candidates if r.latency_ms), key=lambda r: r.latency_ms, default=None)
    best_throughput = max((r for r in candidates if r.fps), key=lambda r: r.fps, default=None)
    if best_latency:
        best_latency.best_latency = True
    if best_throughput:
        best_throughput.best_throughput = True
    hosts = sorted({row.cpu for row in rows.values() if row.cpu})
    return Comparison(rows=list(rows.values()), max_drop=max_drop, best_latency=best_latency,
                      best_throughput=best_throughput, hosts=hosts, metric=metric)


def _latest(model: Model, kind: str, ids: list[int], **match) -> dict[int, Job]:
    jobs = Job.objects.filter(project_id=model.project_id, kind=kind, state=JobState.SUCCEEDED,
                              params__artifact__in=ids).order_by("-finished_at", "-id")
    latest: dict[int, Job] = {}
    for job in jobs:
        if match.get("dataset_id") and (job.params.get("dataset"), job.params.get("split")) != (
                match["dataset_id"], match["split"]):
            continue
        latest.setdefault(job.params["artifact"], job)
    return latest


def row_for(artifact: Artifact, benchmark: Job | None, evaluation: Job | None) -> Row:
    row = Row(artifact=artifact, benchmark=benchmark, evaluation=evaluation)
    if evaluation is not None:
        result = evaluation.result
        row.top1, row.top1_from = result["top1"], f"evaluation on {result['dataset_name']} ({result['split']})"
        row.macro_f1 = result.get("macro_f1")
    elif (artifact.metrics.get("quantization") or {}).get("int8"):  # calibrated without labels: not measured
        facts = artifact.metrics["quantization"]
        row.top1, row.top1_from = facts["int8"]["top1"], f"quantization, on {facts.get('dataset_name', 'its dataset')} (val)"
        row.macro_f1 = facts["int8"].get("macro_f1")
    elif "training" in artifact.metrics:
        row.top1, row.top1_from = artifact.metrics["training"]["final"]["val_top1"], "training (val)"
        row.macro_f1 = artifact.metrics["training"]["final"].get("val_f1")  # a text run's
    if benchmark is not None:
        result = benchmark.result
        row.latency_ms, row.fps = result.get("latency_ms"), result.get("fps")
        row.cpu, row.isa = result["host"]["cpu"], result["host"].get("isa", [])
    return row


def _inherit_top1(row: Row, rows: dict[int, Row]) -> None:
    """A converted IR that was checked equivalent to its source (every check within tolerance, the
    same top-1 on every sample) has its source's top-1, and says so."""
    check = row.artifact.metrics.get("conversion", {}).get("equivalence", {})
    parent = rows.get(row.artifact.parent_id)
    if (row.top1 is None and parent is not None and parent.top1 is not None and check.get("within_tolerance")
            and check.get("top1_agreement") == 1.0):
        row.top1, row.top1_from = parent.top1, f"its source's {parent.top1_from}, checked equivalent"
        row.macro_f1 = parent.macro_f1


def _speedups(row: Row, rows: dict[int, Row]) -> None:
    """Against the PyTorch source, from one host only; a model that came from ONNX or IR has none."""
    if row.benchmark is None:
        return
    result = row.benchmark.result
    if result.get("torch") and result.get("measurements"):  # torch eager measured in the same job
        row.speedup_latency, row.speedup_throughput = result.get("speedup_latency"), result.get("speedup_throughput")
        return
    source = _root(row.artifact, rows)
    if source.artifact.format not in TORCH_FORMATS:
        return
    if source is row or source.cpu != row.cpu or not source.latency_ms:
        if source is row:
            row.speedup_latency = row.speedup_throughput = 1.0
        return
    if row.latency_ms:
        row.speedup_latency = source.latency_ms / row.latency_ms
    if row.fps and source.fps:
        row.speedup_throughput = row.fps / source.fps


def _root(artifact: Artifact, rows: dict[int, Row]) -> Row:
    seen = set()
    while artifact.parent_id in rows and artifact.id not in seen:
        seen.add(artifact.id)
        artifact = rows[artifact.parent_id].artifact
    return rows[artifact.id]


def _candidates(rows: list[Row], max_drop: float, metric: str = "accuracy") -> list[Row]:
    """Rows whose accuracy (or macro-F1) is known and within `max_drop` of the best known."""
    score = (lambda row: row.macro_f1) if metric == "macro_f1" else (lambda row: row.top1)
    known = [row for row in rows if score(row) is not None]
    if not known:
        return []
    best = max(score(row) for row in known)
    return [row for row in known if score(row) >= best - max_drop - 1e-9]
