"""Hugging Face sequence classifiers from a folder, loaded as data: `config.json` read as JSON and
checked against the architectures `transformers` itself implements, weights from safetensors (or a
`pytorch_model.bin` through `torch.load(weights_only=True)`), never `trust_remote_code`. Loading
still runs only inside the jail: a tokenizer or config file is parsed by library code.

    model, tokenizer = load_classifier(folder)
"""

import json
from pathlib import Path

from workers.pipeline.reporting import JobError

# model_type in config.json -> what it is called in messages. Only architectures transformers
# implements itself (no auto_map, no remote code) and that have a sequence-classification head.
ARCHITECTURES = {
    "bert": "BERT", "distilbert": "DistilBERT", "roberta": "RoBERTa", "xlm-roberta": "XLM-RoBERTa",
    "albert": "ALBERT", "electra": "ELECTRA", "mpnet": "MPNet", "deberta": "DeBERTa", "deberta-v2": "DeBERTa-v2",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model")
# What save_pretrained writes beside the vocabulary: settings read as JSON by the tokenizer's loader.
TOKENIZER_SETTINGS = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
# The inputs a BERT-family classifier takes, in its forward()'s order.
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def read_config(folder: Path) -> dict:
    """config.json as plain data, refused with the reason if the architecture is not one we load."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError("The model folder has no config.json; upload the folder save_pretrained() writes "
                       "(config.json, model.safetensors and the tokenizer files).") from None
    except (OSError, ValueError) as error:
        raise JobError(f"The model's config.json cannot be read as JSON ({error}).") from None
    if not isinstance(config, dict):
        raise JobError("The model's config.json is not a JSON object.")
    model_type = config.get("model_type")
    if config.get("auto_map"):
        raise JobError("The model's config.json asks for its own code (auto_map); Vintner never runs a model's "
                       "own Python code. Use an architecture transformers implements: "
                       + ", ".join(sorted(ARCHITECTURES.values())) + ".")
    if model_type not in ARCHITECTURES:
        raise JobError(f"The model is a “{model_type}”, which Vintner does not train or convert as a text classifier; "
                       "it takes " + ", ".join(sorted(ARCHITECTURES.values())) + ".")
    return config


def labels_of(config: dict) -> list[str]:
    """Class names from id2label, in output order; generic LABEL_n names count as none."""
    id2label = config.get("id2label") or {}
    try:
        labels = [str(id2label[key]) for key in sorted(id2label, key=int)]
    except (ValueError, TypeError):
        return []
    return [] if all(name == f"LABEL_{i}" for i, name in enumerate(labels)) else labels


def weights_file(folder: Path) -> Path | None:
    return next((Path(folder) / name for name in WEIGHT_FILES if (Path(folder) / name).is_file()), None)


def tokenizer_folder(folder: Path) -> Path:
    """Where a text artifact's tokenizer files (and config.json) lie: `tokenizer/` beside an IR or
    ONNX model (docs/architecture.md, "A text IR artifact folder"), the folder itself for a
    transformers folder."""
    inside = Path(folder) / "tokenizer"
    return inside if inside.is_dir() else Path(folder)


def load_tokenizer(folder: Path):
    folder = tokenizer_folder(folder)
    from transformers import AutoTokenizer

    if not any((Path(folder) / name).is_file() for name in TOKENIZER_FILES):
        raise JobError("The model folder has no tokenizer (tokenizer.json or vocab.txt…); save the tokenizer "
                       "with the model (tokenizer.save_pretrained(folder)).")
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any library failure is the upload's fault, said in words
        raise JobError(f"The model's tokenizer cannot be loaded: {error}") from error


def load_classifier(folder: Path, *, num_labels: int | None = None, weights: bool = True):
    """(model in eval mode, tokenizer). `weights=False` starts from the config with random weights;
    `num_labels` replaces the classification head when it differs."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = Path(folder)
    read_config(folder)
    tokenizer = load_tokenizer(folder)
    options = {"trust_remote_code": False, "local_files_only": True}
    config = AutoConfig.from_pretrained(str(folder), **options)
    if num_labels is not None and num_labels != config.num_labels:
        config.num_labels = num_labels
        config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        config.label2id = {name: i for i, name in config.id2label.items()}
    try:
        if not weights:
            model = AutoModelForSequenceClassification.from_config(config)
        elif weights_file(folder) is None:
            raise JobError("The model folder has no weights (model.safetensors or pytorch_model.bin).")
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), config=config, ignore_mismatched_sizes=num_labels is not None, use_safetensors=None,
                **options)
    except JobError:
        raise
    except Exception as error:  # noqa: BLE001
        raise JobError(f"The model's weights cannot be loaded: {error}") from error
    return model.eval(), tokenizer


def max_length(config: dict, tokenizer=None) -> int | None:
    """The longest sequence the model takes: its position embeddings, or the tokenizer's
    model_max_length where that is smaller (tokenizers without one say 10**30)."""
    limits = [config.get("max_position_embeddings")]
    if config.get("model_type") in ("roberta", "xlm-roberta"):  # two positions are taken by the padding offset
        limits = [limits[0] - 2 if isinstance(limits[0], int) else None]
    if tokenizer is not None:
        limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [v for v in limits if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10**6]
    return min(limits) if limits else None


def model_inputs(model, tokenizer) -> list[str]:
    """The inputs a classifier reads, in its forward()'s order: the tokenizer's outputs it takes."""
    import inspect

    takes = set(inspect.signature(model.forward).parameters)
    return [name for name in TEXT_INPUTS if name in takes and name in tokenizer.model_input_names]
