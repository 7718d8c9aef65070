"""Text classifiers: a Hugging Face model folder (what save_pretrained writes) found in a zip, checked
and placed; the tokenizer folder that travels with an ONNX or IR text model; and their inspection.

A transformers artifact holds, under canonical names:
    config.json                       the model's config (architecture, id2label, max_position_embeddings)
    model.safetensors | pytorch_model.bin   its weights (a .bin only where weights_only loading takes it)
    tokenizer.json, vocab.txt, …      the tokenizer save_pretrained wrote (TOKENIZER_FILES, TOKENIZER_SETTINGS)
An ONNX or IR text model carries the same config and tokenizer files in a `tokenizer/` folder.
Nothing here runs the model's own code: the config is JSON checked against the architectures
transformers implements (text.models.read_config), a .bin is scanned before weights_only loading.
"""

import json
from pathlib import Path

from workers.pipeline.formats.common import Inspection, Prepared, TensorInfo, folder_size, one_line
from workers.pipeline.formats.pickles import refuse_unsafe_pickle
from workers.pipeline.formats.tensors import precision, torch_dtype
from workers.pipeline.reporting import JobError, Span, show
from workers.pipeline.text.models import (
    ARCHITECTURES, TEXT_INPUTS, TOKENIZER_FILES, TOKENIZER_SETTINGS, WEIGHT_FILES, labels_of, load_classifier,
    load_tokenizer, max_length, model_inputs, read_config,
)

TOKENIZER_FOLDER = "tokenizer"  # beside an ONNX or IR text model: config.json and the tokenizer files
CARRIED = ("config.json", *TOKENIZER_FILES, *TOKENIZER_SETTINGS)
MAX_CONFIG = 4 * 2**20  # a config.json is a few kilobytes; anything this big is not one
SHARDED = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def is_model_folder(folder: Path) -> bool:
    """Whether `folder` looks like save_pretrained output: a config.json and weights or a tokenizer."""
    return (folder / "config.json").is_file() and any(
        (folder / name).is_file() for name in (*WEIGHT_FILES, *SHARDED, *TOKENIZER_FILES))


def prepare_transformers(folder: Path, name: str, out: Path, place) -> Prepared:
    """A Hugging Face model folder checked and its files placed into `out` by `place(src, dst)`:
    config.json (refused with the reason for an architecture Vintner does not load or one that asks
    for its own code), the weights (safetensors preferred; a pytorch_model.bin only if weights_only
    loading takes it) and the tokenizer. Every other file is left behind."""
    if (folder / "config.json").stat().st_size > MAX_CONFIG:
        raise JobError(f"“{show(name)}”: its config.json is {(folder / 'config.json').stat().st_size:,} bytes, far more "
                       "than a model's settings take; upload the folder save_pretrained() writes.")
    config = read_config(folder)
    if any((folder / index).is_file() for index in SHARDED) and not any((folder / w).is_file() for w in WEIGHT_FILES):
        raise JobError(f"“{show(name)}” holds weights split into shards; save the model again with "
                       "save_pretrained(folder, max_shard_size=\"100GB\") so they are one file.")
    weights = next((folder / w for w in WEIGHT_FILES if (folder / w).is_file()), None)
    if weights is None:
        raise JobError(f"“{show(name)}” holds a config.json but no weights: add model.safetensors (or "
                       "pytorch_model.bin) as save_pretrained() writes it.")
    if not any((folder / t).is_file() for t in TOKENIZER_FILES):
        raise JobError(f"“{show(name)}” holds no tokenizer (tokenizer.json or vocab.txt…): a text model cannot be "
                       "fed without the tokenizer it was trained with. Save it into the same folder "
                       "(tokenizer.save_pretrained(folder)) and zip them together.")
    if weights.name == "pytorch_model.bin":
        refuse_unsafe_pickle(weights, f"{name}: pytorch_model.bin")
    place(folder / "config.json", out / "config.json")
    place(weights, out / weights.name)
    for file in (*TOKENIZER_FILES, *TOKENIZER_SETTINGS):
        if (folder / file).is_file():
            place(folder / file, out / file)
    labels = labels_of(config)
    return Prepared(format="transformers", folder=out, primary="config.json", labels=labels,
                    labels_source="config.json (id2label)" if labels else "")


def carry_tokenizer(folder: Path, out: Path, place) -> bool:
    """The tokenizer (and config.json) found beside an ONNX or IR text model, into out/tokenizer/."""
    if not any((folder / t).is_file() for t in TOKENIZER_FILES):
        return False
    for file in CARRIED:
        if (folder / file).is_file() and not (folder / file).is_symlink():
            place(folder / file, out / TOKENIZER_FOLDER / file)
    return True


def reads_text(inputs: list[TensorInfo]) -> bool:
    """A model whose inputs are token ids (input_ids, with attention_mask and token_type_ids), integer."""
    names = {tensor.name for tensor in inputs}
    return ("input_ids" in names and names <= set(TEXT_INPUTS)
            and all(tensor.dtype in ("i64", "i32", "") for tensor in inputs))


def inspect_transformers(prepared: Prepared, config, span: Span) -> Inspection:
    """Load the classifier (in the jail), run it on a sentence of its own vocabulary, and say what it
    takes and gives: token-id inputs [batch, sequence], logits [batch, labels]."""
    import torch

    folder = prepared.folder
    settings = read_config(folder)
    span.progress(0.2)
    model, tokenizer = load_classifier(folder)
    span.progress(0.6)
    names = model_inputs(model, tokenizer)
    parameters = [(torch_dtype(p.dtype), p.numel()) for p in model.parameters()]
    longest = max_length(settings, tokenizer)
    traces, error = True, ""
    try:
        with torch.no_grad():
            batch = tokenizer(vocabulary_sentences(tokenizer, 2), padding=True, truncation=True,
                              max_length=min(longest or 32, 32), return_tensors="pt")
            logits = model(**{name: batch[name] for name in names}).logits
        count = int(logits.shape[-1])
    except Exception as exc:  # noqa: BLE001 - the upload's fault, said in words
        traces, error, count = False, f"the model failed on a tokenized sentence: {one_line(exc)}", model.num_labels
    labels = labels_of(settings)
    return Inspection(
        format="transformers",
        inputs=[TensorInfo(name, [None, None], "i64") for name in names],
        outputs=[TensorInfo("logits", [None, count], "f32")],
        parameters=sum(n for _, n in parameters),
        size_bytes=folder_size(folder),
        precision=precision(parameters),
        opset=None,
        ir_version=None,
        traces=traces,
        trace_error=error,
        details={**text_details(settings, tokenizer), "class": type(model).__name__},
        output_kinds=["logits"],
        labels=labels,
        labels_source="config.json (id2label)" if labels else "",
        modality="text",
    )


def text_details(config: dict, tokenizer) -> dict:
    """What the model page shows of a text model: its architecture, size, longest sequence, tokenizer."""
    return {
        "architecture": ARCHITECTURES.get(config.get("model_type"), str(config.get("model_type", ""))),
        "model_type": config.get("model_type", ""),
        "max_length": max_length(config, tokenizer),
        "tokenizer": type(tokenizer).__name__ if tokenizer is not None else "",
        "vocab_size": len(tokenizer) if tokenizer is not None else config.get("vocab_size"),
        "layers": config.get("num_hidden_layers") or config.get("n_layers"),
        "hidden_size": config.get("hidden_size") or config.get("dim"),
        "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
    }


def carried_details(folder: Path, span: Span) -> dict:
    """For an ONNX or IR text model with its tokenizer folder: the same details, the tokenizer loaded
    (in the jail) to prove it works; {} without one."""
    tokenizer_ir = folder / "openvino_tokenizer.xml"
    if tokenizer_ir.is_file():
        from workers.pipeline.formats.openvino_ir import check_ir_files

        try:
            check_ir_files(tokenizer_ir, tokenizer_ir.with_suffix(".bin"))
        except JobError as error:
            raise JobError(f"The tokenizer IR beside the model (openvino_tokenizer.xml) is refused: {error}") from None
    carried = folder / TOKENIZER_FOLDER
    if not carried.is_dir():
        return {}
    try:
        config = json.loads((carried / "config.json").read_text("utf-8")) if (carried / "config.json").is_file() else {}
    except ValueError:
        config = {}
    tokenizer = load_tokenizer(carried)
    span.reporter.log(f"Found the model's tokenizer ({type(tokenizer).__name__}, {len(tokenizer):,} tokens) beside it.")
    return text_details(config if isinstance(config, dict) else {}, tokenizer)


def vocabulary_sentences(tokenizer, count: int, *, words: int = 12, seed: int = 0) -> list[str]:
    """`count` sentences of the tokenizer's own whole words (no special or sub-word tokens), seeded:
    inputs a model was made for, where no dataset is given."""
    import random

    special = set(tokenizer.all_special_tokens)
    vocabulary = sorted(token for token in tokenizer.get_vocab()
                        if token not in special and token.isalpha() and not token.startswith("##"))
    if not vocabulary:
        vocabulary = ["text"]
    rng = random.Random(seed)
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(words // 2, words))) for _ in range(count)]
