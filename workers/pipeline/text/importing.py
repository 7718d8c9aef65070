"""Text dataset import: uploaded rows (CSV, TSV or JSON Lines; one file, or train/val/test files)
become a published text dataset folder (workers/pipeline/text/rows.py). No Django, no Celery.

The files are untrusted. Every row is checked; a row that cannot be used (empty, not UTF-8, no or an
unknown label, too long, malformed) is skipped and named by its file and line in the report, never
dropped silently. Only problems with the whole upload (no such columns, not UTF-8 at all, one class,
too many rows) raise JobError. The delimiter comes from the file's suffix, never from guessing.
"""

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from workers.pipeline.data import IMAGE_SUFFIXES
from workers.pipeline.reporting import JobError, Span, show
from workers.pipeline.text.lengths import word_lengths
from workers.pipeline.text.rows import SPLITS, TextRow, write_text_dataset

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}  # None: JSON Lines (or one array)
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", ".DS_Store"}
DEFAULT_COLUMNS = {"text": "text", "text_pair": "text_pair", "label": "label", "split": "split"}
MAX_LISTED = 1000  # skipped rows, duplicates and conflicts named in the report; the counts are whole
SAMPLE_PER_CLASS = 5
NOT_UTF8_SHARE = 0.5  # more of a file's rows than this not UTF-8: the file is in another encoding
LAYOUT_HELP = ("Upload one .csv, .tsv or .jsonl file (or a zip of one), or a zip of train/val/test files "
               "(train.csv, val.csv, test.csv), with a header naming the text and label columns.")


@dataclass(frozen=True)
class TextImportConfig:
    val_fraction: float = 0.2  # used only when neither the files nor a split column give splits
    seed: int = 0
    columns: dict = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    max_rows: int = 1_000_000
    max_file_bytes: int = 512 * 2**20  # one row file is read whole: this bounds the jail's memory
    max_text_chars: int = 20_000  # per text (and per text_pair): longer rows are skipped
    max_classes: int = 1000  # more: most likely the wrong column was named the label
    min_class_rows: int = 10  # fewer → a warning naming the class
    imbalance_ratio: float = 10.0


@dataclass
class _Skipped:
    file: str
    line: int
    reason: str


class _Rows:
    """What reading the files found: usable rows (in file order) and the skipped ones."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, TextRow]] = []  # (the file it came from, the row)
        self.skipped: list[_Skipped] = []
        self.not_utf8: Counter = Counter()
        self.read: Counter = Counter()


def row_files(source: Path, name: str, asked: str) -> list[tuple[Path, str]]:
    """The row files to import as text, with the names the user knows them by; [] for an image import.
    `source`: the uploaded file itself (not an archive) or the folder an archive was unpacked into;
    `asked`: the modality the uploader chose, "auto" to decide by what the upload holds. A text upload
    declared as images and an image archive declared as text are refused, saying which is which."""
    if not source.is_dir():
        rows = is_text_name(name)
        if asked == "images" and rows:
            raise JobError(f"“{show(name)}” is a text file, not an archive of images; upload it as a text dataset "
                           f"(Modality: text).")
        if asked == "text" and not rows:
            raise JobError(f"“{show(name)}” is neither a .csv, .tsv or .jsonl file nor a zip of them. {LAYOUT_HELP}")
        return [(source, name)] if rows else []
    found = archive_files(source)
    texts = [(source / name, name) for name in found if is_text_name(name)]
    images = [name for name in found if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    if asked == "images" and texts and not images:
        raise JobError(f"“{show(name)}” holds text rows ({show(texts[0][1])}), not images; upload it as a text "
                       f"dataset (Modality: text).")
    if asked == "text" and not texts:
        if images:
            raise JobError(f"“{show(name)}” holds images ({show(images[0])}…), not text rows; upload it as an image "
                           f"dataset (Modality: images).")
        raise JobError(f"“{show(name)}” holds no .csv, .tsv or .jsonl file. {LAYOUT_HELP}")
    return texts if asked == "text" or (asked == "auto" and texts and not images) else []


def archive_files(folder: Path) -> list[str]:
    """Every file an archive unpacked into `folder`, relative and sorted, without OS clutter."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file() and not path.is_symlink()
                  and not any(part.startswith(".") or part in IGNORED_NAMES for part in path.relative_to(folder).parts))


def is_text_name(name: str) -> bool:
    return Path(name).suffix.lower() in TEXT_SUFFIXES


def import_text_dataset(files: list[tuple[Path, str]], out: Path, config: TextImportConfig, span: Span, *,
                        others: list[str] = ()) -> dict:
    """Rows of `files` ((path, name shown to the user) pairs) into the published folder `out`;
    `others`: the archive's files that are not row files, named in a warning.
    Returns its classes, how many rows it holds, and the report."""
    columns = {**DEFAULT_COLUMNS, **{key: str(value).strip() for key, value in config.columns.items() if value}}
    splits_by_file = _file_splits(files)
    found = _Rows()
    for number, (path, name) in enumerate(files):
        _read_file(path, name, splits_by_file.get(name), columns, config, found, span.child(
            0.9 * number / len(files), 0.9 * (number + 1) / len(files)))
    rows, duplicates, conflicts = _without_duplicates(found)
    rows = _known_labels(rows, found)
    classes = sorted({row.label for row in rows})
    if not rows:
        first = found.skipped[0] if found.skipped else None
        why = f" (the first, {first.file} line {first.line}: {first.reason})" if first else ""
        raise JobError(f"No usable rows{why}. {LAYOUT_HELP}")
    if len(classes) > config.max_classes:
        raise JobError(f"The label column “{show(columns['label'])}” holds {len(classes):,} different labels, more than "
                       f"the {config.max_classes:,} a dataset may have; is it the right column?")
    if len(classes) < 2:
        raise JobError(f"The label column “{show(columns['label'])}” holds one class only (“{show(classes[0])}”); "
                       f"a classifier needs at least two.")
    given = bool(splits_by_file) or any(row.split for row in rows)
    if given:
        rows = [row if row.split else _with(row, split="train") for row in rows]
        if not any(row.split == "train" for row in rows):
            raise JobError("The splits hold no train rows; name a train file (train.csv) or use “train” in the "
                           "split column.")
    else:
        rows = _stratified(rows, config)
    report = _report(files, columns, rows, classes, found, duplicates, conflicts, given, config)
    if others:
        shown = ", ".join(show(name) for name in others[:5]) + (", …" if len(others) > 5 else "")
        report["warnings"].insert(0, f"Left out {len(others)} file{'s' if len(others) != 1 else ''} of the archive "
                                     f"that {'are' if len(others) != 1 else 'is'} not .csv, .tsv or .jsonl: {shown}.")
    write_text_dataset(out, classes=classes, rows=rows, report=report)
    span.progress(1.0)
    span.reporter.log(f"Imported {len(rows):,} rows in {len(classes)} classes; {report['skipped_count']:,} rows "
                      f"skipped, {report['duplicates']['count']:,} duplicates, {len(report['warnings'])} warnings.")
    return {"classes": classes, "rows": len(rows), "report": report}


def _with(row: TextRow, **changes) -> TextRow:
    return TextRow(**{**row.__dict__, **changes})


# --- files and their splits ----------------------------------------------------------------------


def _file_splits(files: list[tuple[Path, str]]) -> dict[str, str]:
    """{name: split} when the files are train/val/test files; {} for one file; else a JobError."""
    if len(files) == 1:
        return {}
    splits = {name: SPLIT_NAMES.get(Path(name).stem.lower()) for _, name in files}
    if None in splits.values() or len(set(splits.values())) != len(splits):
        raise JobError(f"The archive holds {len(files)} row files ({', '.join(show(n) for n in sorted(splits))}): "
                       f"name them train, val and test (train.csv, val.csv, test.csv), or upload one file.")
    return splits


def _read_file(path: Path, name: str, split: str | None, columns: dict, config: TextImportConfig, found: _Rows,
               span: Span) -> None:
    if (size := path.stat().st_size) > config.max_file_bytes:
        raise JobError(f"“{show(name)}” is {size / 2**20:,.0f} MiB, over this server's limit of "
                       f"{config.max_file_bytes / 2**20:,.0f} MiB for one row file; split it into train/val/test files.")
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise JobError(f"“{show(name)}” is UTF-16 text; save it as UTF-8 and upload it again.")
    if b"\0" in raw[:65536]:
        raise JobError(f"“{show(name)}” is not a text file (it holds binary data); upload a UTF-8 .csv, .tsv or "
                       f".jsonl file.")
    # undecodable bytes become lone surrogates, so one bad row is found and named, not the whole file refused
    content = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    delimiter = TEXT_SUFFIXES[Path(name).suffix.lower()]
    records = _csv_records(content, delimiter, name, columns) if delimiter else _json_records(content, name)
    lines = max(1, content.count("\n"))
    for count, (line, record) in enumerate(records, 1):
        if count % 2000 == 0:
            span.raise_if_cancelled()
            span.progress(min(0.99, line / lines))
        found.read[name] += 1
        try:
            row = _row(record, line, split, columns, config)
        except _Skip as skip:
            if skip.not_utf8:
                found.not_utf8[name] += 1
            found.skipped.append(_Skipped(name, line, str(skip)))
            continue
        found.rows.append((name, row))
        if len(found.rows) > config.max_rows:
            raise JobError(f"The upload holds more than {config.max_rows:,} rows, this server's limit; split it "
                           f"or ask the administrator.")
    if found.read[name] and found.not_utf8[name] > NOT_UTF8_SHARE * found.read[name]:
        raise JobError(f"“{show(name)}” is not UTF-8 text ({found.not_utf8[name]:,} of {found.read[name]:,} rows are "
                       f"not): it may be Latin-1 or Windows-1252. Save it as UTF-8 and upload it again.")


class _Skip(Exception):
    """A row that cannot be used; the message is the reason shown to the user."""

    def __init__(self, reason: str, *, not_utf8: bool = False) -> None:
        super().__init__(reason)
        self.not_utf8 = not_utf8


def _csv_records(content: str, delimiter: str, name: str, columns: dict):
    """(line, {column: value}) for each row of a CSV or TSV text; the header must name the columns."""
    csv.field_size_limit(max(len(content), 131072))  # a long field is the row checks' to name, not csv's
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=False)
    try:
        header = [cell.strip() for cell in next(reader, [])]
    except csv.Error as error:
        raise JobError(f"“{show(name)}” has no readable header row ({error}).") from None
    _require_columns(header, name, columns)
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise JobError(f"“{show(name)}” line {start}: {error}; check its quotes.") from None
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            if cells:  # a line of only delimiters is a row with nothing in it; a blank line is no row
                yield line, {"": _Skip("empty row")}
            continue
        if len(cells) != len(header):
            yield line, {"": _Skip(f"expected {len(header)} columns, found {len(cells)}")}
            continue
        yield line, dict(zip(header, cells, strict=True))


def _json_records(content: str, name: str):
    """(line, object) for each line of JSON Lines, or each item of one JSON array (line: its item number)."""
    if content.lstrip().startswith("["):
        try:
            items = json.loads(content)
        except (ValueError, RecursionError) as error:
            raise JobError(f"“{show(name)}” is not valid JSON ({error}).") from None
        yield from enumerate(items, 1)
        return
    for line, text in enumerate(io.StringIO(content, newline=""), 1):
        if not text.strip():
            continue
        try:
            yield line, json.loads(text)
        except (ValueError, RecursionError):
            yield line, {"": _Skip("not a JSON object" if not _has_surrogates(text) else "not UTF-8", not_utf8=
                                   _has_surrogates(text))}


def _require_columns(header: list[str], name: str, columns: dict) -> None:
    missing = [columns[key] for key in ("text", "label") if columns[key] not in header]
    if missing:
        found = ", ".join(f"“{show(cell)}”" for cell in header if cell) or "none"
        raise JobError(f"“{show(name)}” has no column {' or '.join(f'“{show(m)}”' for m in missing)} (its columns: "
                       f"{found}). Name the text and label columns on upload.")


def _row(record, line: int, split: str | None, columns: dict, config: TextImportConfig) -> TextRow:
    if not isinstance(record, dict):
        raise _Skip("not a JSON object")
    if isinstance(record.get(""), _Skip):
        raise record[""]
    if missing := [columns[key] for key in ("text", "label") if columns[key] not in record]:
        raise _Skip(f"no {' or '.join(f'“{show(name)}”' for name in missing)} field")
    text = _field(record.get(columns["text"]), "text", config)
    pair = _field(record.get(columns["text_pair"]), "text_pair", config) if columns["text_pair"] in record else None
    if not text:
        raise _Skip("empty text")
    if columns["text_pair"] in record and not pair:
        raise _Skip("empty text_pair")
    label = record.get(columns["label"])
    label = str(label).strip() if isinstance(label, str | int) and not isinstance(label, bool) else None
    if not label:
        raise _Skip("missing label")
    if _has_surrogates(label):
        raise _Skip("not UTF-8", not_utf8=True)
    if len(label) > 200:
        raise _Skip("a label longer than 200 characters")
    if split is None and (named := record.get(columns["split"])) not in (None, ""):
        split = SPLIT_NAMES.get(str(named).strip().lower())
        if split is None:
            raise _Skip(f"unknown split “{show(named)}” (use train, val or test)")
    return TextRow(text=text, text_pair=pair, label=label, split=split or "", line=line)


def _field(value, what: str, config: TextImportConfig) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Skip(f"{what} is not a string")
    if _has_surrogates(value):
        raise _Skip("not UTF-8", not_utf8=True)
    if len(value) > config.max_text_chars:
        raise _Skip(f"{what} is {len(value):,} characters, over the limit of {config.max_text_chars:,}")
    return value.strip()


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


# --- checks across rows ------------------------------------------------------------------------


def _without_duplicates(found: _Rows) -> tuple[list[tuple[str, TextRow]], list[dict], list[dict]]:
    """Rows without repeats (the same text, pair and label again: skipped, naming the first), and the
    conflicts: the same text and pair under different labels (kept, for the user to fix)."""
    first: dict[tuple, tuple[str, TextRow]] = {}
    labels: dict[tuple, dict[str, list[int]]] = {}
    rows, duplicates = [], []
    for name, row in found.rows:
        key = (row.text, row.text_pair, row.label)
        if key in first:
            earlier_name, earlier = first[key]
            duplicates.append({"file": name, "line": row.line, "first_file": earlier_name, "first": earlier.line})
            continue
        first[key] = (name, row)
        labels.setdefault((row.text, row.text_pair), {}).setdefault(row.label, []).append(row.line)
        rows.append((name, row))
    conflicts = [{"text": text[:200], "text_pair": pair[:200] if pair else None,
                  "labels": {label: lines for label, lines in sorted(by.items())}}
                 for (text, pair), by in labels.items() if len(by) > 1]
    return rows, duplicates, conflicts


def _known_labels(rows: list[tuple[str, TextRow]], found: _Rows) -> list[TextRow]:
    """With splits given, a val or test row whose label no train row has cannot be learnt: skipped."""
    if not any(row.split for _, row in rows):
        return [row for _, row in rows]
    trained = {row.label for _, row in rows if row.split in ("train", "")}
    kept = []
    for name, row in rows:
        if row.label in trained:
            kept.append(row)
        else:
            found.skipped.append(_Skipped(name, row.line, f"unknown label “{show(row.label)}” (no train row has it)"))
    return kept


def _stratified(rows: list[TextRow], config: TextImportConfig) -> list[TextRow]:
    """Per class: shuffle with a seed of its own; the first share goes to val, every class keeps a train row."""
    by_label: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_label.setdefault(row.label, []).append(index)
    splits = ["train"] * len(rows)
    for label, indices in by_label.items():
        random.Random(f"{config.seed}:{label}").shuffle(indices)
        count = round(len(indices) * config.val_fraction)
        if len(indices) >= 2 and config.val_fraction > 0:
            count = max(count, 1)
        for index in indices[:min(count, len(indices) - 1)]:
            splits[index] = "val"
    return [_with(row, split=split) for row, split in zip(rows, splits, strict=True)]


# --- report ------------------------------------------------------------------------------------


def _report(files, columns, rows, classes, found, duplicates, conflicts, given, config) -> dict:
    counts = {label: Counter() for label in classes}
    for row in rows:
        counts[row.label][row.split] += 1
    table = [{"name": label, **{split: counts[label][split] for split in SPLITS}, "total": counts[label].total()}
             for label in classes]
    skipped = sorted(found.skipped, key=lambda skip: (skip.file, skip.line))
    return {
        "modality": "text",
        "layout": "split files" if len(files) > 1 else "one file",
        "files": [name for _, name in files],
        "columns": {key: columns[key] for key in ("text", "text_pair", "label", "split")},
        "pair": any(row.text_pair is not None for row in rows),
        "split": {"source": "archive" if given else "generated", "seed": None if given else config.seed,
                  "val_fraction": None if given else config.val_fraction},
        "rows": len(rows),
        "classes": table,
        "lengths": word_lengths(rows),
        "skipped": [skip.__dict__ for skip in skipped[:MAX_LISTED]],
        "skipped_count": len(skipped),
        "skipped_reasons": dict(Counter(_reason_kind(skip.reason) for skip in skipped).most_common()),
        "duplicates": {"count": len(duplicates), "rows": duplicates[:MAX_LISTED]},
        "conflicts": {"count": len(conflicts), "texts": conflicts[:MAX_LISTED]},
        "sample": _sample(rows, classes),
        "warnings": _warnings(table, conflicts, given, config),
    }


def _reason_kind(reason: str) -> str:
    """The reason without its particulars, for counting: “unknown split ‘x’ …” → “unknown split”."""
    for kind in ("unknown split", "unknown label", "expected", "text is", "text_pair is"):
        if reason.startswith(kind):
            return {"expected": "wrong number of columns", "text is": "text too long",
                    "text_pair is": "text_pair too long"}.get(kind, kind)
    return reason


def _sample(rows: list[TextRow], classes: list[str]) -> list[dict]:
    """The first few rows of each class, as they appear in the files."""
    sample = {label: [] for label in classes}
    for row in rows:
        if len(sample[row.label]) < SAMPLE_PER_CLASS:
            sample[row.label].append({"text": row.text[:300], "text_pair": row.text_pair[:300] if row.text_pair
                                      else None, "split": row.split, "line": row.line})
    return [{"label": label, "rows": sample[label]} for label in classes]


def _warnings(table: list[dict], conflicts: list, given: bool, config: TextImportConfig) -> list[str]:
    found = [f"Class '{row['name']}' has only {row['total']} rows; at least {config.min_class_rows} are recommended."
             for row in table if row["total"] < config.min_class_rows]
    largest, smallest = max(table, key=lambda r: r["total"]), min(table, key=lambda r: r["total"])
    if largest["total"] > config.imbalance_ratio * smallest["total"]:
        found.append(f"Classes are imbalanced: '{largest['name']}' has {largest['total']} rows, "
                     f"'{smallest['name']}' only {smallest['total']}.")
    if conflicts:
        found.append(f"{len(conflicts)} texts appear under more than one label (listed under Conflicts); a model "
                     f"cannot learn both.")
    if given and not sum(row["val"] for row in table):
        found.append("The splits hold no val rows, so training cannot be validated.")
    return found
