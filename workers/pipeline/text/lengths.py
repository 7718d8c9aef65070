"""How long a text dataset's rows are: words at import (any model), tokens for one model's tokenizer.

`token_lengths` is for the jobs that tokenize a dataset (train, evaluate): they put its answer in
their result as `token_lengths`, and the dataset page shows it beside the word histogram."""

import statistics
from collections import Counter

from workers.pipeline.text.rows import TextRow


def word_lengths(rows: list[TextRow], bins: int = 12) -> dict:
    """Words per row (text and pair together): min, median, max, and a histogram."""
    lengths = [len(row.text.split()) + (len(row.text_pair.split()) if row.text_pair else 0) for row in rows]
    return {"unit": "words", **histogram(lengths, bins)}


def token_lengths(tokenizer, rows: list[TextRow], *, max_length: int | None = None, model: str = "",
                  bins: int = 12, batch: int = 512) -> dict:
    """Tokens per row for `tokenizer` (special tokens included, as the model sees them), and how many
    rows are over `max_length` (which the job then cuts)."""
    lengths = []
    for paired in (False, True):  # a tokenizer takes a batch of single texts or of pairs, not a mix
        chosen = [row for row in rows if (row.text_pair is not None) == paired]
        for start in range(0, len(chosen), batch):
            part = chosen[start:start + batch]
            pairs = [row.text_pair for row in part] if paired else None
            lengths += [len(ids) for ids in tokenizer([row.text for row in part], pairs, truncation=False)["input_ids"]]
    over = sum(length > max_length for length in lengths) if max_length else 0
    return {"unit": "tokens", "model": model, "max_length": max_length, "over": over, **histogram(lengths, bins)}


def histogram(values: list[int], bins: int = 12) -> dict:
    """min, median, max and [[low, high, count], ...] over equal-width integer bins (high inclusive)."""
    low, high = min(values), max(values)
    width = max(1, -(-(high - low + 1) // bins))
    counts = Counter((value - low) // width for value in values)
    return {"min": low, "median": statistics.median_low(values), "max": high,
            "bins": [[low + i * width, low + (i + 1) * width - 1, counts[i]] for i in range(max(counts) + 1)]}
