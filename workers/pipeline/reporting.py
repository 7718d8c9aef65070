"""What pipeline code may say while it runs, and the errors it raises. No Django, no Celery.

A pipeline function gets a `Reporter` and polls `reporter.cancelled()` between units of work.
`Span` hands a child step its own slice of the progress bar.
"""

import contextlib
import re
import time
from typing import Protocol


# How running out of memory reads in a message or a log, from Python, C++ (bad_alloc) and the OS.
MEMORY_SIGNS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "can't allocate memory", "out of memory")


class JobError(Exception):
    """A failure to show the user as is: say what went wrong and what to do about it. The whole
    underlying message (a library's multi-line error) goes to the job's details: `detail`, or else
    the exception it was raised from (`raise JobError(...) from None` keeps it as the context)."""

    def __init__(self, message: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def underlying(self) -> str:
        if self.detail:
            return self.detail
        cause = self.__cause__ or self.__context__
        return whole_text(cause) if cause is not None and not isinstance(cause, JobError) else ""


class Cancelled(Exception):
    """Raised by pipeline code when `cancelled()` turned true."""


class Reporter(Protocol):
    def log(self, message: str, *, level: str = "info") -> None: ...

    def progress(self, fraction: float) -> None: ...

    def stage(self, name: str) -> None: ...

    def metric(self, name: str, value: float, *, step: int | None = None, summary: bool = False) -> None:
        """Frequent points may be averaged over short windows; a `summary` point (an epoch's
        result) is kept as it is."""

    def checkpoint(self, state: dict) -> None: ...

    def cancelled(self) -> bool: ...


class SilentReporter:
    """A Reporter that says nothing and is never cancelled: a DDP rank other than 0 (stopped from
    outside), a benchmark's train() without the job machinery."""

    def log(self, message: str, *, level: str = "info") -> None: ...

    def progress(self, fraction: float) -> None: ...

    def stage(self, name: str) -> None: ...

    def metric(self, name: str, value: float, *, step: int | None = None, summary: bool = False) -> None: ...

    def checkpoint(self, state: dict) -> None: ...

    def cancelled(self) -> bool:
        return False


class Span:
    """Progress of a child step, mapped into [start, end] of its parent's bar."""

    def __init__(self, reporter: Reporter, start: float, end: float) -> None:
        self.reporter, self.start, self.end = reporter, start, end

    def progress(self, fraction: float) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        self.reporter.progress(self.start + (self.end - self.start) * fraction)

    def child(self, start: float, end: float) -> "Span":
        width = self.end - self.start
        return Span(self.reporter, self.start + width * start, self.start + width * end)

    def raise_if_cancelled(self) -> None:
        if self.reporter.cancelled():
            raise Cancelled()


def show(name: object) -> str:
    """A user-given name fit for a message: control characters escaped, very long names shortened."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))
    return shown if len(shown) <= 200 else f"{shown[:120]}…{shown[-60:]}"


ANSI = re.compile(r"\x1b\[[0-9;]*m")
# OpenVINO's messages start with where in its sources they were raised, a line or several deep
# ("Exception from src/inference/src/cpp/core.cpp:84:"): the words come after.
SOURCE_LOCATION = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?)$")
TORCHSCRIPT_TRACE = "The following operation failed in the TorchScript interpreter"  # the error is its last line


def one_line(error: BaseException) -> str:
    """An exception as one short line for a message: its first line that says something (not a
    source location, not a heading ending in a colon; for a TorchScript interpreter failure, its
    last line). The whole text belongs in the job's details (`whole_text`)."""
    lines = [line.strip() for line in whole_text(error).splitlines() if line.strip()]
    if lines and lines[0].startswith(TORCHSCRIPT_TRACE):
        lines = lines[-1:]
    said = [line for line in lines if not SOURCE_LOCATION.match(line)] or lines or [type(error).__name__]
    line = next((line for line in said if not line.endswith(":")), said[0])  # "…failed with GeneralFailure:" heads the words
    return line if len(line) <= 300 else line[:297] + "…"


def whole_text(error: BaseException) -> str:
    """An exception's whole message, without terminal colours."""
    return ANSI.sub("", str(error)).strip()


@contextlib.contextmanager
def timed(seconds: dict[str, float], name: str):
    """Add the wall time of the block to seconds[name] (a stage's time in a result's breakdown)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
