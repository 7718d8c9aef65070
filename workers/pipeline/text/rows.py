"""A published text dataset folder, the contract between the import and every job that reads it:

    index.json   {"modality": "text", "classes": [...], "pair": bool, "counts": {split: n}, "report": {...}}
    rows.jsonl   one object a line: {"text": str, "text_pair": str | null, "label": str | null,
                 "split": "train" | "val" | "test", "line": int (its line in the uploaded file)}

Rows are data, never code: the reader checks every field's type and each label against the classes.
"""

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from workers.pipeline.reporting import JobError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TextRow:
    text: str
    label: str | None
    split: str
    text_pair: str | None = None
    line: int = 0


@dataclass(frozen=True)
class TextData:
    classes: list[str]
    pair: bool  # rows carry a second text (sentence pairs: paraphrase, entailment)
    rows: list[TextRow]
    report: dict

    def split(self, name: str) -> list[TextRow]:
        return [row for row in self.rows if row.split == name]

    def label_ids(self, rows: list[TextRow]) -> list[int]:
        number = {name: i for i, name in enumerate(self.classes)}
        return [number[row.label] for row in rows]


def write_text_dataset(folder: Path, *, classes: list[str], rows: Iterable[TextRow], report: dict) -> Path:
    """Publishable folder contents for `rows` (written by the import, and by tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(SPLITS, 0)
    pair = False
    with (folder / "rows.jsonl").open("w", encoding="utf-8") as out:
        for row in rows:
            counts[row.split] += 1
            pair = pair or row.text_pair is not None
            out.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
    index = {"modality": "text", "classes": list(classes), "pair": pair, "counts": counts, "report": report}
    (folder / "index.json").write_text(json.dumps(index, ensure_ascii=False))
    return folder


def read_text_dataset(folder: Path) -> TextData:
    """The rows of a published text dataset folder; a JobError if it is not one."""
    folder = Path(folder)
    try:
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        if index.get("modality") != "text":
            raise JobError("This dataset holds images, not text rows; choose a text dataset for a text model.")
        classes = [str(name) for name in index["classes"]]
        known = set(classes)
        rows = []
        with (folder / "rows.jsonl").open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                raw = json.loads(line)
                text, pair, label, split = raw["text"], raw.get("text_pair"), raw.get("label"), raw["split"]
                if not isinstance(text, str) or not (pair is None or isinstance(pair, str)) or split not in SPLITS \
                        or not (label is None or label in known):
                    raise ValueError(f"row {number} of rows.jsonl is not a valid row")
                rows.append(TextRow(text=text, text_pair=pair, label=label, split=split, line=int(raw.get("line", 0))))
    except JobError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise JobError(f"The text dataset's files cannot be read ({error}); import the dataset again.") from None
    return TextData(classes=classes, pair=bool(index.get("pair")), rows=rows, report=index.get("report") or {})
