"""Results on stdout: aligned tables for people, JSON for scripts."""

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def print_table(rows: Iterable[dict], columns: Sequence[tuple[str, str]]) -> None:
    """columns: (header, key) pairs; missing values print empty."""
    cells = [[header.upper() for header, _ in columns]]
    cells += [["" if row.get(key) is None else str(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    sys.stdout.flush()


def print_fields(pairs: Iterable[tuple[str, object]]) -> None:
    """`name: value` lines, names aligned; empty values left out."""
    pairs = [(name, value) for name, value in pairs if value not in (None, "", [], {})]
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        print(f"{name + ':':<{width + 1}} {value}")
    sys.stdout.flush()


def flatten(data, prefix: str = "", *, limit: int = 30) -> list[tuple[str, object]]:
    """A result's scalars as dotted paths (`devices.cpu.median_gflops`); long lists are counted."""
    pairs: list[tuple[str, object]] = []

    def walk(value, path: str) -> None:
        if len(pairs) >= limit:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list) and (len(value) > 8 or any(isinstance(item, (dict, list)) for item in value)):
            pairs.append((path, f"[{len(value)} entries]"))
        else:
            pairs.append((path, value))

    walk(data, prefix)
    return pairs


def when(text: str | None) -> str:
    """An API timestamp in local time, to the second."""
    if not text:
        return ""
    try:
        return datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


def duration(start: str | None, end: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() if start and end else None
    except ValueError:
        return None
