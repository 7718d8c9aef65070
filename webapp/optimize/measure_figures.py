"""What the performance, comparison and deployment pages say about measurements, in words and
rounded figures: read from benchmark and evaluation jobs' results (workers/pipeline/benchmark.py,
workers/tasks.py `evaluate`) and from optimize.comparison. Raw numbers stay beside the words where
a page sorts or draws by them.

Rounding keeps three significant figures (0.812 ms, 12.3 ms, 153 ms): enough to tell variants
apart, no more digits than a one-host measurement deserves.
"""

from webapp.core.modality import rate_unit
from webapp.optimize.comparison import Comparison, Row
from webapp.registry.models import TORCH_FORMATS, Artifact, Format
from webapp.optimize.quantization import percent

SHORT_FORMAT = {Format.STATE_DICT: "PyTorch", Format.TORCHSCRIPT: "TorchScript", Format.TORCH_EXPORT: "torch.export",
                Format.ONNX: "ONNX", Format.OPENVINO_IR: "IR"}

# CPU extensions by what they mean for inference speed; "key" ones decide INT8 (and BF16) speed.
ISA_WORDS = {
    "amx_int8": ("AMX-INT8", True), "amx_bf16": ("AMX-BF16", True), "amx_tile": ("AMX tiles", True),
    "avx512_vnni": ("AVX-512 VNNI", True), "avx_vnni": ("AVX-VNNI", True), "avx512f": ("AVX-512", True),
    "avx512bw": ("AVX-512 BW", True), "avx512_bf16": ("AVX-512 BF16", True), "avx2": ("AVX2", False),
    "fma": ("FMA", False), "avx": ("AVX", False), "sse4_2": ("SSE4.2", False), "neon": ("NEON", False),
    "asimddp": ("Arm dot product", True),
}
HEADLINE_HINTS = {"latency": "p50", "throughput": "fps"}  # the figures a comparison takes from each hint
NOISY_SPREAD = 0.10  # a row whose rounds spread more is marked (workers/pipeline/benchmark.py: the same)


def ms(value: float | None) -> str:
    """Milliseconds, three significant figures."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fps(value: float | None) -> str:
    """Images per second, three significant figures (thousands separated)."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def times(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}×" if value < 10 else f"{value:,.0f}×"


def share(value: float | None) -> str:
    """A share of the whole (0..1) as a percentage with one decimal."""
    return "—" if value is None else f"{100 * value:.1f} %"


def points_words(fraction: float) -> str:
    """A top-1 drop allowance in points: "1 point", "2.5 points"."""
    value = round(100 * fraction, 2)
    return f"{value:g} point{'' if value == 1 else 's'}"


def variant_name(artifact: Artifact) -> str:
    """How a variant is named on the comparison: "INT8 IR #12", "FP32 PyTorch #10"."""
    fmt = SHORT_FORMAT.get(artifact.format, artifact.get_format_display() or "artifact")
    return f"{artifact.precision.upper()} {fmt} #{artifact.id}".strip()


# --- host ----------------------------------------------------------------------------------------


def host_figures(host: dict) -> dict:
    """The machine a benchmark ran on: CPU, its ISA extensions (the INT8 ones emphasised) and a
    sentence on what they mean for INT8, OpenVINO version and device."""
    isa = [flag for flag in host.get("isa") or []]
    flags = [{"flag": flag, "label": ISA_WORDS.get(flag, (flag, False))[0], "key": ISA_WORDS.get(flag, (flag, False))[1]}
             for flag in isa]
    if {"amx_int8", "amx_tile"} & set(isa):
        int8 = "AMX: INT8 and BF16 matrix multiplication in hardware tiles — INT8 models gain the most here."
    elif {"avx512_vnni", "avx_vnni", "asimddp"} & set(isa):
        int8 = "VNNI: INT8 dot products in one instruction — INT8 models run markedly faster than FP32 here."
    elif "avx512f" in isa:
        int8 = "AVX-512 without VNNI: INT8 gains less than on a CPU with VNNI or AMX."
    else:
        int8 = "No VNNI, AMX or AVX-512: INT8 runs on plain vector instructions; expect smaller INT8 speedups."
    cores = ""
    if host.get("physical_cores"):
        cores = f"{host['physical_cores']} core{'s' if host['physical_cores'] != 1 else ''}"
        if host.get("logical_cores") and host["logical_cores"] != host["physical_cores"]:
            cores += f", {host['logical_cores']} threads"
    return {"cpu": host.get("cpu") or "unknown CPU", "flags": flags, "int8": int8, "cores": cores,
            "openvino": host.get("openvino") or "", "device": host.get("device") or "CPU",
            "device_name": host.get("device_name") or "",
            "has_key": any(flag["key"] for flag in flags)}


# --- one benchmark -------------------------------------------------------------------------------


def benchmark_figures(result: dict, artifact: Artifact) -> dict:
    """A benchmark job's result as the performance page shows it."""
    model = (artifact.precision or "").upper()
    rows = [_measurement_row(m, model) for m in result.get("measurements") or []]
    torch = result.get("torch")
    if torch:
        rows.append({**_measurement_row(torch, model), "torch": True})
    headline = {"latency": result.get("latency_ms"), "fps": result.get("fps")}
    for row in rows:  # the figures the comparison takes: p50 under the latency hint, throughput under its hint
        row["headline_latency"] = row["hint"] == "latency" or (not result.get("measurements") and row["torch"])
        row["headline_fps"] = row["hint"] == "throughput" or (not result.get("measurements") and row["torch"])
    layers = [{**layer, "ms_text": ms(layer.get("ms")), "share_text": share(layer.get("share")),
               "executed": layer.get("status") == "EXECUTED"} for layer in result.get("layers") or []]
    types = [{**kind, "ms_text": ms(kind.get("ms")), "share_text": share(kind.get("share")),
              "width": round(100 * min(1.0, max(0.0, kind.get("share") or 0.0)), 1)}
             for kind in result.get("layer_types") or []]
    reference = result.get("reference")
    load = result.get("load") or {}
    return {
        "host": host_figures(result.get("host") or {}),
        "shape": result.get("shape") or [],
        "rows": rows,
        "latency": ms(headline["latency"]),
        "fps": fps(headline["fps"]),
        "speedups": speedup_words(result, rate_unit(artifact.model.modality)) if reference and reference != artifact.id else [],
        "speedup": times(result.get("speedup_latency")) if reference and reference != artifact.id
        and result.get("speedup_latency") else None,
        "reference": reference if reference != artifact.id else None,
        "torch_only": bool(torch) and not result.get("measurements"),
        "layers": layers,
        "types": types,
        "precisions": precision_shares(result.get("layers") or []),
        "profile": layer_profile_words(result.get("layer_profile") or {}, result.get("layers") or [],
                                       result.get("latency_ms") if not torch or result.get("measurements") else None),
        "rounds": result.get("rounds") or 1,
        "noisy": load.get("reasons") if load.get("noisy") else None,
        "other_load": share(load.get("other_cpu_share")) if "other_cpu_share" in load else None,
        "default_precision": (result.get("host") or {}).get("default_precision") or "",
    }


def measurement_name(m: dict, model: str) -> str:
    """What a row measured, in words: "Latency hint — FP32 model, f32", "Throughput hint — FP32 model,
    device default precision (bf16)", "Torch eager, 2 threads". Rows stored before precisions were
    recorded keep their label."""
    if m.get("engine") == "torch":
        return f"Torch eager, {m['threads']} thread{'s' if m['threads'] != 1 else ''}" if m.get("threads") else "Torch eager"
    label = m.get("label") or ""
    if not m.get("precision"):
        return label[:1].upper() + label[1:]
    streams = m.get("streams") or 0
    what = (f"{m['hint'].capitalize()} hint" if m.get("hint")
            else f"Batch {m.get('batch')} × {streams} stream{'s' if streams != 1 else ''}")
    model = f"{model} model" if model else "model"
    if m.get("default_precision"):
        return f"{what} — {model}, device default precision ({m['precision']})"
    return f"{what} — {model}, {m['precision']}"


def _measurement_row(m: dict, model: str) -> dict:
    latency = m.get("latency_ms") or {}
    spread = m.get("spread") or {}
    return {
        "label": measurement_name(m, model), "engine": m.get("engine", ""), "hint": m.get("hint", ""),
        "precision": m.get("precision", ""), "default_precision": bool(m.get("default_precision")),
        "rounds": len(m.get("rounds") or []) or None,
        "spread_fps": share(spread.get("fps")) if spread else "—",
        "spread_p50": share(spread.get("p50")) if spread else "—",
        "noisy": any(value > NOISY_SPREAD for value in spread.values()),
        "batch": m.get("batch"), "streams": m.get("streams") or None, "requests": m.get("requests"),
        "iterations": m.get("iterations"), "seconds": m.get("seconds"), "fps": fps(m.get("fps")),
        "p50": ms(latency.get("p50")), "p90": ms(latency.get("p90")), "p99": ms(latency.get("p99")),
        "torch": m.get("engine") == "torch",
    }


def layer_profile_words(profile: dict, layers: list[dict], latency: float | None) -> dict | None:
    """How the per-layer counters add up: the requests and streams they are summed over, their total
    per inference, and the latencies to hold it against."""
    if not layers:
        return None
    total = profile.get("total_ms", sum(layer.get("ms") or 0.0 for layer in layers))
    requests, streams = profile.get("requests") or 1, profile.get("streams") or 1
    return {
        "total": ms(total), "requests": requests, "streams": streams, "runs": profile.get("runs"),
        "precision": profile.get("precision") or "", "threads": profile.get("threads"),
        "profiled_latency": ms(profile.get("profiled_latency_ms")) if profile.get("profiled_latency_ms") else None,
        "latency": ms(latency) if latency else None,
        "summed": requests > 1 or streams > 1,
    }


def speedup_words(result: dict, unit: str) -> list[str]:
    """Sentences on the speedups over torch eager measured in the same job (so on the same host)."""
    words = []
    latency, throughput = result.get("speedup_latency"), result.get("speedup_throughput")
    if latency:
        if latency >= 1:
            words.append(f"{times(latency)} lower latency than torch eager on this host "
                         f"({ms(result.get('latency_ms'))} ms against {ms(result.get('torch_latency_ms'))} ms, p50).")
        else:
            words.append(f"{times(1 / latency)} higher latency than torch eager on this host "
                         f"({ms(result.get('latency_ms'))} ms against {ms(result.get('torch_latency_ms'))} ms, p50).")
    if throughput:
        words.append(f"{times(throughput)} the throughput of torch eager on this host "
                     f"({fps(result.get('fps'))} against {fps(result.get('torch_fps'))} {unit}).")
    return words


def precision_shares(layers: list[dict]) -> list[dict]:
    """Layer time by the precision the kernels really ran in (executed layers only), largest first."""
    totals: dict[str, float] = {}
    for layer in layers:
        if layer.get("status") == "EXECUTED" and layer.get("ms"):
            key = layer.get("precision") or "other"
            totals[key] = totals.get(key, 0.0) + layer["ms"]
    whole = sum(totals.values())
    if not whole:
        return []
    return [{"precision": key, "share": share(value / whole), "width": round(100 * value / whole, 1)}
            for key, value in sorted(totals.items(), key=lambda item: -item[1])]


def precision_class(precision: str) -> str:
    precision = (precision or "").upper()
    if precision in ("I8", "U8", "I4", "U4", "U1"):
        return "int"
    if precision in ("BF16", "FP16", "F16"):
        return "half"
    return "float" if precision in ("FP32", "F32") else "other"


# --- one evaluation ------------------------------------------------------------------------------


def evaluation_figures(result: dict) -> dict:
    """An evaluation job's result: top-1/top-5 and the confusion matrix as a heat table (rows: the
    true class, columns: the predicted one; each cell shaded by its share of the row)."""
    confusion = result.get("confusion") or []
    labels = list(result.get("labels") or [])
    labels += [str(index) for index in range(len(labels), len(confusion))]
    rows, mistakes = [], []
    for true, counts in enumerate(confusion):
        total = sum(counts)
        cells = []
        for predicted, count in enumerate(counts):
            heat = count / total if total else 0.0
            cells.append({"count": count, "heat": round(heat, 3), "diag": true == predicted,
                          "predicted": labels[predicted] if predicted < len(labels) else str(predicted),
                          "strong": heat >= 0.5})
            if true != predicted and count:
                mistakes.append((count, labels[true], labels[predicted]))
        rows.append({"label": labels[true], "cells": cells, "total": total,
                     "recall": percent(counts[true] / total) if total and true < len(counts) else "—"})
    mistakes.sort(key=lambda mistake: -mistake[0])
    text = result.get("modality") == "text"
    return {
        "top1": percent(result.get("top1")), "top5": percent(result.get("top5")),
        "images": result.get("rows") if text else result.get("images"),
        "text": text, "macro_f1": percent(result.get("macro_f1")), "max_length": result.get("max_length"),
        "per_class": [{"label": entry["label"], "precision": percent(entry["precision"]),
                       "recall": percent(entry["recall"]), "f1": percent(entry["f1"]), "support": entry["support"]}
                      for entry in result.get("per_class") or []],
        "dataset": result.get("dataset"), "dataset_name": result.get("dataset_name") or "",
        "split": result.get("split") or "", "labels": labels[:len(confusion)], "rows": rows,
        "mistakes": [f"{true} taken for {predicted} {count} time{'s' if count != 1 else ''}"
                     for count, true, predicted in mistakes[:3]],
    }


# --- the comparison ------------------------------------------------------------------------------


def comparison_figures(comparison: Comparison, unit: str) -> dict:
    """The comparison page: each variant's row in words, bars scaled to the slowest (latency) and
    the fastest (throughput), which to pick for each goal and the faster variants passed over."""
    rows = comparison.rows
    known = [row.top1 for row in rows if row.top1 is not None]
    best_top1 = max(known) if known else None
    slowest = max((row.latency_ms for row in rows if row.latency_ms), default=None)
    fastest = max((row.fps for row in rows if row.fps), default=None)
    shown = []
    for row in rows:
        artifact = row.artifact
        shown.append({
            "row": row, "artifact": artifact, "name": variant_name(artifact),
            "top1": percent(row.top1), "latency": ms(row.latency_ms), "fps": fps(row.fps),
            "speedup_latency": times(row.speedup_latency), "speedup_throughput": times(row.speedup_throughput),
            "is_source": artifact.format in TORCH_FORMATS and row.speedup_latency == 1.0,
            "cpu": row.cpu, "measured": row.benchmark is not None,
            "latency_width": round(100 * row.latency_ms / slowest, 1) if row.latency_ms and slowest else 0,
            "fps_width": round(100 * row.fps / fastest, 1) if row.fps and fastest else 0,
        })
    by_latency = sorted((r for r in shown if r["row"].latency_ms), key=lambda r: r["row"].latency_ms)
    by_fps = sorted((r for r in shown if r["row"].fps), key=lambda r: -r["row"].fps)
    drop = points_words(comparison.max_drop)
    return {
        "rows": shown,
        "by_latency": by_latency,
        "by_fps": by_fps,
        "best_top1": percent(best_top1),
        "drop": drop,
        "drop_points": f"{round(100 * comparison.max_drop, 2):g}",
        "unmeasured": sum(1 for r in shown if not r["measured"]),
        "picks": [
            _pick("latency", comparison.best_latency, rows, best_top1, comparison.max_drop, unit),
            _pick("throughput", comparison.best_throughput, rows, best_top1, comparison.max_drop, unit),
        ],
    }


def _pick(goal: str, best: Row | None, rows: list[Row], best_top1: float | None, max_drop: float, unit: str) -> dict:
    """Which variant to take for a goal, in a sentence, and the faster ones left out (and why)."""
    figure = (lambda row: row.latency_ms) if goal == "latency" else (lambda row: row.fps)
    faster = (lambda a, b: a < b) if goal == "latency" else (lambda a, b: a > b)
    said = (lambda row: f"{ms(row.latency_ms)} ms p50") if goal == "latency" else (lambda row: f"{fps(row.fps)} {unit}")
    title = "For the lowest latency" if goal == "latency" else "For the highest throughput"
    drop = points_words(max_drop)
    if best is None:
        if not any(figure(row) for row in rows):
            sentence = f"{title}: no variant is benchmarked yet."
        else:
            sentence = (f"{title}: no pick — no benchmarked variant has a top-1 known within {drop} of the best. "
                        f"Evaluate the variants on a dataset to compare their accuracy.")
    else:
        if best_top1 is None or best.top1 >= best_top1 - 1e-9:
            accuracy = f"top-1 {percent(best.top1)}, the best known"
        else:
            gap = round(100 * (best_top1 - best.top1), 1)
            accuracy = f"top-1 {percent(best.top1)}, {gap:.1f} points below the best ({percent(best_top1)}), within the {drop} allowed"
        sentence = f"{title}: {variant_name(best.artifact)} — {said(best)}, {accuracy}."
    passed = []
    for row in rows:
        if row is best or not figure(row) or (best is not None and not faster(figure(row), figure(best))):
            continue
        name = f"{variant_name(row.artifact)} {'is faster' if goal == 'latency' else 'has a higher throughput'} ({said(row)})"
        if row.top1 is None:
            passed.append(f"{name} but its top-1 is not known: evaluate it to consider it.")
        elif best_top1 is not None:
            gap = round(100 * (best_top1 - row.top1), 1)
            passed.append(f"{name} but its top-1 ({percent(row.top1)}) is {gap:.1f} points below the best, "
                          f"more than the {drop} allowed.")
    return {"goal": goal, "sentence": sentence, "best": best, "passed": passed}
