"""What each job kind does inside its jail: one function a kind, `step(request, span) -> result`.

The request is JSON made by the worker (`workers/tasks.py`): the settings, and the paths of the
staged inputs (read-only) and of the work folder (`request["work"]`, the only writable place).
The result is JSON too; files a step makes stay in the work folder, named relative to it, for the
worker to check and publish. No Django, no Celery, no storage: these run in `workers.pipeline.jailed`.
"""

import os
from pathlib import Path

from workers.pipeline.reporting import Span


def probe(request: dict, span: Span) -> dict:
    from workers.pipeline.probe import ProbeConfig, run_probe

    result = run_probe(ProbeConfig(**request["config"]), span.reporter, resume=request.get("resume"))
    return {"devices": result.summary()}


def dataset_import(request: dict, span: Span) -> dict:
    """Unpack an uploaded archive under hard limits and validate every image (or text row) into
    work/dataset, whose index.json describes it. The modality asked may be "auto": a .csv, .tsv or
    .jsonl file, or an archive of them only, is text; anything else, images."""
    from workers.pipeline.archives import ArchiveRejected, ExtractLimits, archive_format, extract_archive
    from workers.pipeline.data import ImportConfig, import_dataset
    from workers.pipeline.text.importing import TextImportConfig, archive_files, import_text_dataset, row_files

    work, archive, name = Path(request["work"]), Path(request["archive"]), request["name"]
    try:
        packed = bool(archive_format(archive, name))
    except ArchiveRejected:
        packed = False  # a plain file: rows, or for images the extraction below says what is wrong
    extracted = work / "extracted"
    files = [] if packed else row_files(archive, name, request["modality"])
    if not files:  # an archive (a plain file that is neither rows nor an archive is refused here, in words)
        span.reporter.stage("unpacking")
        extract_archive(archive, extracted, ExtractLimits(**request["limits"]), span.child(0.0, 0.3), name=name)
        files = row_files(extracted, name, request["modality"])
    span.reporter.stage("validating")
    if files:
        others = sorted(set(archive_files(extracted)) - {name for _, name in files}) if extracted.exists() else []
        result = import_text_dataset(files, work / "dataset", TextImportConfig(**request["text"]),
                                     span.child(0.3, 0.97), others=others)
        return {"modality": "text", "rows": result["rows"], "classes": len(result["classes"])}
    result = import_dataset(extracted, work / "dataset", ImportConfig(**request["config"]), span.child(0.3, 0.97))
    # classes, items and report are in work/dataset/index.json: a big dataset's list is no message
    return {"modality": "images", "images": len(result.items), "classes": len(result.classes)}


def model_import(request: dict, span: Span) -> dict:
    """Recognise and check uploaded model files into work/model, and inspect them."""
    from workers.pipeline.formats import InspectConfig, inspect_model, prepare_model

    work = Path(request["work"])
    span.reporter.stage("checking")
    sources = [(Path(path), filename) for path, filename in request["sources"]]
    prepared = prepare_model(sources, work / "model", span.child(0.0, 0.2), declared_format=request["format"])
    span.reporter.stage("inspecting")
    inspection = inspect_model(prepared, InspectConfig(**request["source"]), span.child(0.2, 0.95))
    return {"format": prepared.format, "primary": prepared.primary,
            "inspection": _with_graph(inspection.as_dict(), prepared, span)}


def convert(request: dict, span: Span) -> dict:
    """A PyTorch or ONNX model to an OpenVINO IR in work/ir, checked against its source."""
    from workers.pipeline.conversion import ConvertConfig
    from workers.pipeline.conversion import convert as convert_model

    if request.get("text") is not None:
        return _convert_text(request, span)
    config = request["config"]
    config = ConvertConfig(**{**config, "input_size": tuple(config["input_size"])})
    images = [Path(path) for path in request["images"]] if request.get("images") is not None else None
    result = convert_model(_prepared(request["model"]), _inspect_config(request["model"]), config,
                           Path(request["work"]) / "ir", span.child(0.0, 0.9), images=images)
    span.reporter.stage("publishing")
    return {"conversion": result.as_dict(), "inspection": _ir_facts(result.folder, span.child(0.9, 0.97)),
            "route": result.route, "max_abs_diff": result.equivalence.max_abs_diff,
            "within_tolerance": result.equivalence.within_tolerance}


def _convert_text(request: dict, span: Span) -> dict:
    """A text classifier to an IR with its tokenizer in work/ir, checked on a text dataset's rows
    (its validation split, else its training rows) or on sentences of its own vocabulary."""
    from workers.pipeline.conversion.text import TextConvertConfig, convert_text
    from workers.pipeline.text.rows import read_text_dataset

    settings = request["text"]
    config = TextConvertConfig(**{**settings, "labels": tuple(settings["labels"])})
    rows = None
    if request.get("dataset"):
        data = read_text_dataset(Path(request["dataset"]))
        picked = data.split("val") or data.split("train") or data.rows
        rows = [(row.text, row.text_pair) for row in picked[:config.samples]]
        if len(rows) < config.samples:
            span.reporter.log(f"The dataset has {len(rows)} rows to check on, not the {config.samples} asked for.",
                              level="warning")
    result = convert_text(_prepared(request["model"]), config, Path(request["work"]) / "ir", span.child(0.0, 0.9),
                          rows=rows)
    span.reporter.stage("publishing")
    return {"conversion": result.as_dict(), "inspection": _ir_facts(result.folder, span.child(0.9, 0.97)),
            "route": result.route, "max_abs_diff": result.equivalence.max_abs_diff,
            "within_tolerance": result.equivalence.within_tolerance}


def quantize(request: dict, span: Span) -> dict:
    """INT8 by post-training quantization (with accuracy control or not) into work/int8; a PyTorch
    or ONNX source is converted to an FP32 IR first, NNCF's OpenVINO flow being the reference one."""
    from workers.pipeline.conversion import ConvertConfig
    from workers.pipeline.conversion import convert as convert_model
    from workers.pipeline.quantization import quantize_ir

    work, source = Path(request["work"]), request["model"]
    if request.get("text"):
        return _quantize_text(request, span)
    config, data, spec = _quantize_settings(request)
    prepared = _prepared(source)
    xml, bar = prepared.folder / prepared.primary, span
    if prepared.format != "openvino_ir":
        span.reporter.stage("converting")
        span.reporter.log("Converting to an FP32 OpenVINO IR first (kept only inside this job).")
        converted = convert_model(prepared, _inspect_config(source), ConvertConfig(input_size=spec.size),
                                  work / "fp32", span.child(0.0, 0.2))
        xml, bar = converted.folder / "model.xml", span.child(0.2, 1.0)
    result = quantize_ir(source=xml, data=data, spec=spec, config=config, out=work / "int8", span=bar.child(0.0, 0.97))
    span.reporter.stage("publishing")
    return {"quantization": result.as_dict(),
            "inspection": _ir_facts(result.folder, Span(span.reporter, 0.97, 0.99))}


def qat(request: dict, span: Span) -> dict:
    """Quantization-aware training: the training loop's curves, checkpoints and resume, then the
    best epoch converted to an INT8 IR in work/qat."""
    from workers.pipeline.formats import load_torch_module
    from workers.pipeline.qat import quantization_aware_training
    from workers.pipeline.training import TrainConfig

    config, data, spec = _quantize_settings(request)
    module = load_torch_module(_prepared(request["model"]), _inspect_config(request["model"]))
    train_config = TrainConfig(**request["train"], input_size=spec.size[0], mean=spec.mean, std=spec.std)
    result, training = quantization_aware_training(
        module, train_config, Path(request["dataset"]), data, spec, config, Path(request["work"]) / "qat",
        span.reporter, resume=_resume(request), save_checkpoint=_checkpoint_saver(request, span))
    span.reporter.stage("publishing")
    return {"quantization": result.as_dict(),
            "training": {k: v for k, v in training.as_dict().items() if k != "weights"},
            "inspection": _ir_facts(result.folder, Span(span.reporter, 0.97, 0.99))}


def benchmark(request: dict, span: Span) -> dict:
    """An IR's or ONNX model's speed with OpenVINO, and torch eager of its PyTorch source, in the
    same alternating rounds."""
    from workers.pipeline.benchmark import BenchmarkConfig, benchmark_summary
    from workers.pipeline.benchmark import benchmark as measure
    from workers.pipeline.formats import load_torch_module

    settings = request["config"]
    config = BenchmarkConfig(**{**settings, "hints": tuple(settings["hints"]),
                                "matrix": tuple(tuple(point) for point in settings["matrix"])})
    model, reference = request.get("model"), request.get("reference")
    xml = module = None
    if model is not None:
        prepared = _prepared(model)
        xml = prepared.folder / prepared.primary
    if reference is not None:
        span.reporter.stage("loading torch")
        module = load_torch_module(_prepared(reference), _inspect_config(reference))
    height, width = request.get("input_size") or (0, 0)
    result = measure(xml, config, span, torch_module=module, torch_shape=[1, 3, height, width]).as_dict()
    return {**result, **benchmark_summary(result)}


def evaluate(request: dict, span: Span) -> dict:
    """Top-1, top-5 and the confusion matrix of a model on images with known labels; of a text model
    on rows, accuracy, macro-F1 and per class too."""
    if request.get("text"):
        return _evaluate_text(request, span)
    from workers.pipeline.evaluation import Pictures, model_runner
    from workers.pipeline.evaluation import evaluate as evaluate_model
    from workers.pipeline.feeding import InputSpec

    spec = InputSpec.of(request["preprocessing"], embedded=request["embedded"])
    span.reporter.stage("loading")
    runner = model_runner(_prepared(request["model"]), _inspect_config(request["model"], input_size=spec.size[0]),
                          output=request["model"].get("output", 0))
    span.reporter.stage("reading images")
    pictures = Pictures([Path(path) for path in request["images"]], request["labels"], spec, span.child(0.0, 0.3))
    span.reporter.stage("evaluating")
    scores = evaluate_model(runner, pictures, request["classes"], span.child(0.3, 1.0))
    return scores.as_dict()


def train(request: dict, span: Span) -> dict:
    """Train an image classifier; the best epoch's weights end in work/out/weights.pth. A cancel
    with a finished epoch still hands back that epoch (`kept`), for "keep best epoch"."""
    from workers.pipeline.formats import load_torch_module
    from workers.pipeline.training import TrainConfig, TrainingCancelled
    from workers.pipeline.training import train as train_model

    init = request.get("init")
    module = load_torch_module(_prepared(init), _inspect_config(init)) if init else None
    work = Path(request["work"])
    try:
        cache = request.get("cache") or {}
        result = train_model(TrainConfig(**request["config"]), Path(request["dataset"]), work / "out", span.reporter,
                             init=module, resume=_resume(request), save_checkpoint=_checkpoint_saver(request, span),
                             cache=Path(cache["entry"]) if cache else None, cache_identity=cache.get("identity"))
    except TrainingCancelled as cancelled:
        cancelled.kept = _trained(cancelled.result) if cancelled.result is not None else None
        raise
    return _trained(result)


def train_text(request: dict, span: Span) -> dict:
    """Train a text classifier (from `model`, a transformers folder, or a built-in shape); the best
    epoch ends in work/out/model as a save_pretrained folder. A cancel with a finished epoch hands
    back that epoch (`kept`), for "keep best epoch"."""
    from workers.pipeline.text.training import TextTrainConfig, TextTrainingCancelled, train_text as train_model

    work = Path(request["work"])
    model = Path(request["model"]) if request.get("model") else None
    try:
        result = train_model(TextTrainConfig(**request["config"]), Path(request["dataset"]), work / "out",
                             span.reporter, model_folder=model, resume=_resume(request),
                             save_checkpoint=_checkpoint_saver(request, span))
    except TextTrainingCancelled as cancelled:
        cancelled.kept = _text_trained(cancelled.result) if cancelled.result is not None else None
        raise
    return _text_trained(result)


def noop(request: dict, span: Span) -> dict:
    """Nothing but the jail's start and end: what bench/jail.py times."""
    span.progress(1.0)
    return {"echo": request.get("echo")}


STEPS = {step.__name__: step for step in (probe, dataset_import, model_import, convert, quantize, qat, benchmark,
                                          evaluate, train, train_text, noop)}


# --- text models --------------------------------------------------------------------------------

def _text_rows(request: dict, split: str) -> tuple[list, list[int]]:
    """A split's rows of the staged text dataset and the model's output index of each (by name)."""
    from workers.pipeline.reporting import JobError
    from workers.pipeline.text.rows import read_text_dataset

    rows = read_text_dataset(Path(request["dataset"])).split(split)
    index = request["label_index"]
    unknown = sorted({row.label for row in rows if row.label not in index}, key=str)
    if unknown:
        raise JobError(f"The rows' labels {', '.join(map(str, unknown[:8]))} are not among the model's labels "
                       f"({', '.join(list(index)[:8])}).")
    return rows, [index[row.label] for row in rows]


def _evaluate_text(request: dict, span: Span) -> dict:
    from workers.pipeline.reporting import JobError
    from workers.pipeline.text.measure import (Sentences, TextInputs, evaluate_text, model_for_inputs,
                                               model_max_length, text_runner)
    from workers.pipeline.text.models import load_tokenizer

    model = request["model"]
    prepared = _prepared(model)
    span.reporter.stage("loading")
    tokenizer = load_tokenizer(prepared.folder)
    inputs = TextInputs.of(model_for_inputs(prepared), tokenizer, max_length=request.get("max_length"),
                           model_max=model_max_length(prepared.folder))
    runner = text_runner(prepared, output=model.get("output", 0))
    rows, labels = _text_rows(request, request["split"])
    if not rows:
        raise JobError(f"The dataset's {request['split']} split has no rows to evaluate on.")
    span.reporter.stage("tokenizing")
    sentences = Sentences(rows, labels, tokenizer, inputs, span.child(0.0, 0.2))
    if sentences.truncated:
        span.reporter.log(f"{sentences.truncated} of {len(rows)} rows are longer than {inputs.max_length} tokens "
                          "and were cut to it, as the model would be fed them.", level="warning")
    span.reporter.stage("evaluating")
    result = evaluate_text(runner, sentences, request["labels"], span.child(0.2, 1.0))
    return {**result, "max_length": inputs.max_length, "truncated": sentences.truncated}


def _quantize_text(request: dict, span: Span) -> dict:
    """A text IR to INT8 on rows of a text dataset: calibration from its train split, accuracy on its
    val split (its test split where it has no val rows)."""
    from workers.pipeline.quantization import QuantizeConfig, QuantizeData, quantize_ir
    from workers.pipeline.reporting import JobError
    from workers.pipeline.text.measure import TextFeed, model_max_length
    from workers.pipeline.text.models import load_tokenizer

    work, model = Path(request["work"]), request["model"]
    prepared = _prepared(model)
    if prepared.format != "openvino_ir":
        raise JobError("Vintner quantizes a text model's OpenVINO IR; convert the model first.")
    settings = request["config"]
    config = QuantizeConfig(**{**settings, "ignored_names": tuple(settings["ignored_names"]),
                               "ignored_patterns": tuple(settings["ignored_patterns"])})
    train, _ = _text_rows(request, "train")
    validation, labels = _text_rows(request, "val")
    if not validation:
        validation, labels = _text_rows(request, "test")
    data = QuantizeData(calibration=[{"text": r.text, "text_pair": r.text_pair} for r in train],
                        validation=[{"text": r.text, "text_pair": r.text_pair} for r in validation],
                        labels=labels, classes=len(request["labels"]), output=model.get("output", 0))
    feed = TextFeed(load_tokenizer(prepared.folder), max_length=request.get("max_length"),
                    model_max=model_max_length(prepared.folder))
    result = quantize_ir(source=prepared.folder / prepared.primary, data=data, spec=None, config=config,
                         out=work / "int8", span=span.child(0.0, 0.95), feed=feed)
    _carry_tokenizer(prepared.folder, result.folder)
    span.reporter.stage("publishing")
    return {"quantization": {**result.as_dict(), "unit": "rows"}, "inspection": _ir_facts(result.folder, Span(span.reporter, 0.95, 0.99))}


def _carry_tokenizer(source: Path, folder: Path) -> None:
    """The tokenizer (its folder, or its files beside the model) and a tokenizer IR go with a text
    IR's INT8 copy, in the same places."""
    import shutil

    from workers.pipeline.text.models import TOKENIZER_FILES

    source = Path(source)
    if (source / "tokenizer").is_dir() and not (source / "tokenizer").is_symlink():
        shutil.copytree(source / "tokenizer", folder / "tokenizer", symlinks=True)
    names = {*TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json", "config.json",
             "openvino_tokenizer.xml", "openvino_tokenizer.bin"}
    for name in sorted(names):
        path = source / name
        if path.is_file() and not path.is_symlink():
            shutil.copyfile(path, folder / name)


# --- shared pieces ------------------------------------------------------------------------------

def _prepared(model: dict):
    from workers.pipeline.formats import Prepared

    return Prepared(format=model["format"], folder=Path(model["folder"]), primary=model["primary"])


def _inspect_config(model: dict, **overrides):
    from workers.pipeline.formats import InspectConfig

    return InspectConfig(architecture=model.get("architecture", ""), num_classes=model.get("num_classes"),
                         input_size=overrides.get("input_size", model.get("input_size", 224)))


def _with_graph(facts: dict, prepared, span: Span) -> dict:
    """The graph view's data (OpenVINO IR and ONNX); a model it fails on is still published."""
    from workers.pipeline.formats import one_line
    from workers.pipeline.graphs import model_graph

    if prepared.format in ("openvino_ir", "onnx"):
        try:
            facts["graph"] = model_graph(prepared)
        except Exception as error:
            span.reporter.log(f"No graph view for this model: {one_line(error)}", level="warning")
    return facts


def _ir_facts(folder: Path, span: Span) -> dict:
    from workers.pipeline.formats import InspectConfig, Prepared, inspect_model

    ir = Prepared(format="openvino_ir", folder=folder, primary="model.xml")
    return _with_graph(inspect_model(ir, InspectConfig(), span).as_dict(), ir, span)


def _quantize_settings(request: dict):
    from workers.pipeline.feeding import InputSpec
    from workers.pipeline.quantization import QuantizeConfig, QuantizeData

    settings = request["config"]
    config = QuantizeConfig(**{**settings, "ignored_names": tuple(settings["ignored_names"]),
                               "ignored_patterns": tuple(settings["ignored_patterns"])})
    data = request["data"]
    data = QuantizeData(calibration=[Path(p) for p in data["calibration"]],
                        validation=[Path(p) for p in data["validation"]], labels=data["labels"], classes=data["classes"],
                        output=request["model"].get("output", 0))
    return config, data, InputSpec.of(request["preprocessing"], embedded=request["embedded"])


def _resume(request: dict) -> Path | None:
    return Path(request["resume"]) if request.get("resume") else None


def _checkpoint_saver(request: dict, span: Span):
    """Hand each checkpoint to the worker, which keeps it in storage for a resumed attempt. A link
    under a new name (its step's): the loop replaces its checkpoint file each time, never rewrites it."""
    work = Path(request["work"])
    (work / "checkpoints").mkdir(exist_ok=True)

    def save(path: Path, summary: dict) -> None:
        name = f"checkpoints/step-{summary['step']}.pth"
        os.link(path, work / name)
        span.reporter.checkpoint_file(name, summary)

    return save


def _text_trained(result) -> dict:
    """The run's facts and its folder's inspection (as a transformers upload's reads); the folder is
    work/out/model, where the worker looks for it."""
    import inspect as signatures

    from workers.pipeline.formats.common import folder_size
    from workers.pipeline.text.models import ARCHITECTURES, labels_of, load_classifier, read_config

    model, tokenizer = load_classifier(result.folder)
    config = read_config(result.folder)
    takes = set(signatures.signature(model.forward).parameters)
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids")
             if name in takes and name in tokenizer.model_input_names]
    inspection = {
        "format": "transformers", "modality": "text",
        "inputs": [{"name": name, "shape": [None, None], "dtype": "i64"} for name in names],
        "outputs": [{"name": "logits", "shape": [None, result.num_classes], "dtype": "f32"}],
        "parameters": sum(p.numel() for p in model.parameters()), "size_bytes": folder_size(result.folder),
        "precision": "fp32", "opset": None, "ir_version": None, "traces": True, "trace_error": "",
        "details": {"architecture": ARCHITECTURES.get(result.model_type, result.model_type),
                    "model_type": result.model_type, "class": type(model).__name__,
                    "max_length": config.get("max_position_embeddings"), "trained_max_length": result.max_length,
                    "tokenizer": type(tokenizer).__name__, "vocab_size": len(tokenizer),
                    "layers": config.get("num_hidden_layers") or config.get("n_layers"),
                    "hidden_size": config.get("hidden_size") or config.get("dim"),
                    "lowercase": bool(getattr(tokenizer, "do_lower_case", False))},
        "output_kinds": ["logits"], "scores_output": 0, "scores": "logits",
        "labels": labels_of(config), "labels_source": "config.json (id2label)",
    }
    return {**{k: v for k, v in result.as_dict().items() if k != "folder"}, "inspection": inspection}


def _trained(result) -> dict:
    """The run's facts; its weights are work/out/weights.pth, where the worker looks for them."""
    return {k: v for k, v in result.as_dict().items() if k != "weights"}
