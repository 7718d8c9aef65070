"""What an INT8 artifact's page and its model's page say about its quantization, in words and
rounded figures, read from the metrics the quantize job stored (`metrics["quantization"]`,
fractions in 0..1; workers/pipeline/quantization.py writes them)."""

METRIC_WORDS = {"accuracy": "top-1", "macro_f1": "macro-F1"}  # what accuracy control bounded
METHODS = {
    "ptq": "Post-training quantization",
    "accuracy": "Post-training quantization with accuracy control",
    "qat": "Quantization-aware training",
}
LONG_LIST = 8  # more layers than this are folded


def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{100 * fraction:.1f} %"


def points(fraction: float, *, signed: bool = True) -> str:
    """A difference of accuracies in percentage points, one decimal, with a real minus sign."""
    value = round(100 * fraction, 1) or 0.0  # never "-0.0"
    if not signed:
        return f"{abs(value):.1f}"
    return f"{'+' if value > 0 else '−' if value < 0 else ''}{abs(value):.1f}"


def quantization_figures(metrics: dict) -> dict | None:
    """The report of an artifact's quantization, or None for one that was not quantized here. One
    calibrated on unlabelled images has no accuracy figures (`measured` False)."""
    facts = (metrics or {}).get("quantization")
    if not isinstance(facts, dict) or "fp32" not in facts or "int8" not in facts:
        return None
    measured = facts["fp32"] is not None and facts["int8"] is not None
    fp32, int8 = facts["fp32"] or {}, facts["int8"] or {}
    drop = facts.get("drop")
    if drop is None:  # older reports stored no drop; an unmeasured one has none to show
        drop = fp32["top1"] - int8["top1"] if measured else 0.0
    settings = facts.get("settings") or {}
    ignored = [line for line in settings.get("ignored_scope") or []]
    restored = list(facts.get("restored") or [])
    figures = {
        "measured": measured,
        "method": facts.get("method", ""),
        "method_words": METHODS.get(facts.get("method"), facts.get("method", "")),
        "dataset": facts.get("dataset"),
        "dataset_name": facts.get("dataset_name", ""),
        "calibration_images": facts.get("calibration_images"),
        "images": int8.get("images"),
        "rows": [
            {"name": name, "fp32": percent(fp32.get(key)), "int8": percent(int8.get(key)),
             "change": points(int8[key] - fp32[key]) if fp32.get(key) is not None and int8.get(key) is not None else "—",
             "trend": _trend(int8.get(key), fp32.get(key))}
            for name, key in (("Top-1", "top1"), ("Top-5", "top5"), ("Macro-F1", "macro_f1")) if key in fp32
        ] if measured else [],
        "unit": facts.get("unit", "images"),
        "metric": METRIC_WORDS.get(facts.get("metric"), "top-1"),
        "fp32_top1": percent(fp32.get("top1")),
        "int8_top1": percent(int8.get("top1")),
        "change": points(-drop),
        "drop": points(drop, signed=False),
        "dropped": round(100 * drop, 1) > 0,
        "quantized_layers": facts.get("quantized_layers"),
        "restored": restored,
        "ignored": ignored,
        "fold": len(restored) > LONG_LIST or len(ignored) > LONG_LIST,
        "warnings": list(facts.get("warnings") or []),
        "settings": settings,
        "seconds": round(sum((facts.get("seconds") or {}).values())),
        "target": None,
    }
    target = facts.get("target")
    if target:
        relative = target.get("drop_type") == "relative"
        figures["target"] = {
            "met": bool(target.get("met")),
            "allowed": points(target.get("allowed", target.get("max_drop", 0)), signed=False),
            # max_drop is a fraction of top-1 (absolute) or a share of the FP32 top-1 (relative)
            "asked": f"{100 * target.get('max_drop', 0):g} % of the FP32 {figures['metric']}" if relative
            else f"{100 * target.get('max_drop', 0):g} point{'s' if target.get('max_drop') != 0.01 else ''} of "
                 f"{figures['metric']}",
            "relative": relative,
        }
    return figures


def _trend(after: float | None, before: float | None) -> str:
    if after is None or before is None:
        return ""
    change = round(100 * (after - before), 1)
    return "down" if change < 0 else "up" if change > 0 else "same"
