"""What the user watches: a bar for bytes moving, a live line for a job, log lines above it.

On a terminal these are rich progress bars on stderr; otherwise (a pipe, a CI log) plain lines,
a few at most per phase, so that logs stay readable. Results and job logs go to stdout, the rest
to stderr, so `vintner … > file` keeps what matters.
"""

import sys
import time
from datetime import datetime
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

PLAIN_EVERY = 2.0  # seconds between plain progress lines
LEVEL_STYLES = {"warning": "yellow", "error": "bold red", "debug": "dim"}


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # unreachable: GiB is the last unit


def human_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def note(text: str) -> None:
    """A line for the person at the keyboard, never for a pipe."""
    print(text, file=sys.stderr, flush=True)


def _live() -> bool:
    return sys.stderr.isatty()


def _progress(*columns) -> Progress:
    return Progress(*columns, console=Console(stderr=True), redirect_stdout=False, redirect_stderr=False)


class Transfer:
    """Bytes moving (upload, download, hashing): bytes, percent, speed and time left."""

    def __init__(self, label: str, total: int, *, done: int = 0) -> None:
        self.label, self.total, self.start_done = label, total, done
        self.done = done
        self.started = time.monotonic()
        self.printed = 0.0
        self.bar: Progress | None = None

    def __enter__(self) -> "Transfer":
        if _live():
            self.bar = _progress(
                TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), DownloadColumn(binary_units=True),
                TransferSpeedColumn(), TimeRemainingColumn(),
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total or None, completed=self.done)
        return self

    def update(self, done: int) -> None:
        self.done = done
        if self.bar:
            self.bar.update(self.task, completed=done)
        elif time.monotonic() - self.printed >= PLAIN_EVERY and (done < self.total or not self.total):
            self._plain()

    def _plain(self) -> None:
        self.printed = time.monotonic()
        elapsed = max(time.monotonic() - self.started, 1e-6)
        speed = (self.done - self.start_done) / elapsed
        if self.total:
            line = (f"{self.label}: {100 * self.done / self.total:3.0f}%  {human_bytes(self.done)} of "
                    f"{human_bytes(self.total)}, {human_bytes(speed)}/s")
        else:  # a size the server did not say
            line = f"{self.label}: {human_bytes(self.done)}, {human_bytes(speed)}/s"
        if 0 < self.done < self.total and speed > 0:
            line += f", {human_seconds((self.total - self.done) / speed)} left"
        elif self.done >= self.total:
            line += f" in {human_seconds(elapsed)}"
        note(line)

    def __exit__(self, kind, error, trace) -> None:
        if self.bar:
            self.bar.stop()
        elif kind is None:
            self._plain()  # the final line: 100% and how long it took


def _clock(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S") if at else "--:--:--"


class JobView:
    """A job as it goes: log lines as they come, one live line with state, stage and percent."""

    def __init__(self, job: dict, *, logs: TextIO) -> None:
        self.job_id, self.kind = job["id"], job["kind"]
        self.state, self.stage = job.get("state", ""), job.get("stage", "")
        self.progress_value = job.get("progress", 0.0) or 0.0
        self.logs = logs
        self.bar: Progress | None = None
        self.printed_tenth = 0  # plain lines from 10% on
        self.printed_stage = None

    def __enter__(self) -> "JobView":
        if _live():
            self.bar = _progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
            )
            self.bar.start()
            self.task = self.bar.add_task(self._line(), total=1.0, completed=self.progress_value)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()

    def _line(self) -> str:
        return " · ".join(part for part in (f"#{self.job_id} {self.kind}", self.state, self.stage) if part)

    def _refresh(self) -> None:
        if self.bar:
            self.bar.update(self.task, description=self._line(), completed=self.progress_value)
            return
        if self.stage and self.stage != self.printed_stage:
            self.printed_stage = self.stage
            note(f"stage: {self.stage}")
        tenth = int(self.progress_value * 10)
        if self.state == "running" and tenth > self.printed_tenth:
            self.printed_tenth = tenth
            note(f"progress: {self.progress_value:.0%}" + (f" ({self.stage})" if self.stage else ""))

    def note(self, text: str) -> None:
        if self.bar:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            note(text)

    def event(self, event: dict) -> None:
        kind, data = event.get("kind"), event.get("data") or {}
        if kind == "log":
            level = str(data.get("level", "info"))
            line = f"{_clock(event.get('at'))} {level.upper():<7} {data.get('message', '')}"
            if self.bar and self.logs.isatty():  # the same terminal as the bar: print above it
                self.bar.console.print(line, markup=False, highlight=False, style=LEVEL_STYLES.get(level), soft_wrap=True)
            else:  # a file or a pipe gets the lines as they are
                print(line, file=self.logs, flush=True)
        elif kind == "progress":
            self.progress_value = float(data.get("progress", self.progress_value))
            self._refresh()
        elif kind == "stage":
            self.stage = str(data.get("stage", ""))
            self._refresh()
        elif kind == "state":
            self.state = str(data.get("state", ""))
            details = ", ".join(f"{key} {value}" for key, value in data.items()
                                if key not in ("state", "error", "result") and value not in (None, ""))
            self.note(f"job #{self.job_id} {self.state}" + (f" ({details})" if details else ""))
            if self.state == "succeeded":
                self.progress_value = 1.0
            self._refresh()
        # metric points are for the web page's charts; the CLI shows them in `jobs show --json`.
