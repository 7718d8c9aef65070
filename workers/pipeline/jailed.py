"""The jailed child's side of `workers/jail.py`: read the request, run the step, report as it goes.

    python -m workers.pipeline.jailed      (stdin: {"step": ..., "request": {...}}, then "cancel")

Reports go to the parent as JSON lines on the pipe named by VINTNER_MESSAGE_FD; stdout and stderr
are the job's raw log, which only the parent reads. The child never touches the database, the
broker or storage: it has none of their addresses or credentials, and no network.
"""

import importlib
import json
import os
import sys
import threading
import traceback

# EFBIG: Python ignores SIGXFSZ, so a write past RLIMIT_FSIZE is this error, not the signal
FILE_SIZE_SIGNS = ("File too large",)


class PipeReporter:
    """The pipeline's Reporter, over the pipe; `cancelled()` turns true when the parent says so."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def send(self, kind: str, **fields) -> None:
        line = json.dumps({"kind": kind, **fields}, default=str)
        with self._lock:
            self._out.write(line + "\n")

    def log(self, message: str, *, level: str = "info") -> None:
        self.send("log", message=str(message), level=level)

    def progress(self, fraction: float) -> None:
        self.send("progress", fraction=float(fraction))

    def stage(self, name: str) -> None:
        self.send("stage", name=str(name))

    def metric(self, name: str, value: float, *, step: int | None = None, summary: bool = False) -> None:
        value = float(value)
        if value == value and abs(value) != float("inf"):  # a NaN loss is not a point on a chart
            self.send("metric", name=str(name), value=value, step=step, summary=summary)

    def checkpoint(self, state: dict) -> None:
        self.send("checkpoint", state=state)

    def checkpoint_file(self, path: str, state: dict) -> None:
        """A file in the work folder for the parent to keep (a training epoch's checkpoint)."""
        self.send("checkpoint_file", path=path, state=state)

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def listen(self, control) -> None:
        """The parent's later lines are cancels; its end (EOF) means it is gone, and so is the job."""
        for line in control:
            if line.strip() == b"cancel":
                self._cancel.set()
        os._exit(1)


def _step(name: str):
    """A job kind's step by name, or "module:function": what the worker asked for (it is trusted),
    from code the jail can see (the jail's own tests run their hostile steps this way)."""
    if ":" in name:
        module, function = name.split(":")
        return getattr(importlib.import_module(module), function)
    from workers.pipeline.steps import STEPS

    return STEPS[name]


def main() -> None:
    reporter = PipeReporter(int(os.environ["VINTNER_MESSAGE_FD"]))
    # The parent's pipe is read through a stream of our own, and sys.stdin becomes /dev/null: a
    # forked child (a DataLoader worker) closes sys.stdin first thing, which would wait forever for
    # the lock the listening thread holds on it.
    control = os.fdopen(os.dup(0), "rb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.stdin = open(os.devnull)
    order = json.loads(control.readline())
    threading.Thread(target=reporter.listen, args=(control,), daemon=True, name="cancel-listener").start()
    from workers.pipeline.reporting import MEMORY_SIGNS, Cancelled, JobError, Span, one_line, whole_text

    def details(underlying: str) -> str:
        """The whole underlying message first (what the details box shows), then the traceback."""
        trace = traceback.format_exc()
        return f"{underlying}\n\n{trace}" if underlying else trace

    try:
        result = _step(order["step"])(order["request"], Span(reporter, 0.0, 1.0))
    except JobError as error:
        reporter.send("error", error="job", message=str(error), detail=details(error.underlying()))
    except Cancelled as cancelled:
        kept = getattr(cancelled, "kept", None)  # what a cancelled step still made (a best epoch)
        reporter.send("cancelled", result=kept)
    except MemoryError:
        reporter.send("error", error="memory", message="MemoryError", detail=traceback.format_exc())
    except BaseException as error:  # noqa: BLE001 - every ending is said to the parent
        whole = f"{type(error).__name__}: {whole_text(error)}"
        kind = ("memory" if any(sign in whole for sign in MEMORY_SIGNS)
                else "file_size" if any(sign in whole for sign in FILE_SIZE_SIGNS) else "unexpected")
        reporter.send("error", error=kind, message=f"{type(error).__name__}: {one_line(error)}", detail=details(whole))
    else:
        reporter.send("result", result=result)
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown: library threads and atexit hooks have nothing to add


if __name__ == "__main__":
    main()
