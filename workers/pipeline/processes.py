"""Child processes of a job: letting a Celery pool process start them, and running a pipeline step
in a process of its own with its reports forwarded to the job as they come.

Why a step may need a process of its own: some libraries leave a process worse than they found it.
NNCF's accuracy control makes and drops OpenVINO Cores out of order. Each Core's CPU plugin gives
the thread an alternate signal stack of its own and, when it goes, puts back the one it found, even
when that one was unmapped meanwhile by the plugin that made it. The next signal the thread handles
(a DataLoader's SIGCHLD in a later training job, Celery's own signals) then kills the worker with
SIGSEGV. A child process takes that with it when it ends, and can be stopped at once on cancel.
"""

import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager

from workers.pipeline.reporting import Cancelled, JobError, Span

POLL_SECONDS = 0.5  # how often the parent asks the job whether it was cancelled
CANCEL_GRACE_SECONDS = 10  # a step that does not stop by itself in this time is terminated


@contextmanager
def children_allowed():
    """Let a process of Celery's prefork pool start children. Its processes are daemonic, which
    multiprocessing forbids to start any (ours watch their parent and exit with it), and their
    authkey is billiard's, which only billiard may pickle (a spawned child is sent its parent's)."""
    process = multiprocessing.current_process()
    saved = dict(process._config)
    process._config["daemon"] = False
    process._config["authkey"] = multiprocessing.process.AuthenticationString(bytes(process.authkey))
    try:
        yield
    finally:
        process._config.update(saved)


def run_isolated(step: Callable, span: Span, what: str, **kwargs):
    """`step(span=..., **kwargs)` in a freshly spawned process; its result, or its error raised
    here. `step` must be a module-level function and the arguments must pickle. `what` names the
    step in the message of a child that dies without a word."""
    context = multiprocessing.get_context("spawn")  # a clean process: fork would copy this one's state
    messages, cancel = context.Queue(), context.Event()
    with children_allowed():  # a new Process copies this one's settings
        process = context.Process(target=_child, name=f"vintner-{what}", daemon=True,
                                  args=(messages, cancel, os.getpid(), step, span.start, span.end, kwargs))
        process.start()
    try:
        return _relay(process, messages, cancel, span.reporter, what)
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
        messages.close()


def _relay(process, messages, cancel, reporter, what: str):
    """Forward the child's reports until it sends its result or its error."""
    asked = cancelled_at = None
    ended = False
    while True:
        now = time.monotonic()
        if asked is None or now - asked >= POLL_SECONDS:
            asked = now
            if cancelled_at is None and reporter.cancelled():
                cancel.set()
                cancelled_at = now
        if cancelled_at is not None and now - cancelled_at > CANCEL_GRACE_SECONDS:
            raise Cancelled()
        try:
            kind, payload = messages.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if ended:  # dead, and nothing left in the pipe
                raise JobError(f"The {what} process ended without a result (exit code {process.exitcode}); "
                               "the worker's log may say more.") from None
            ended = not process.is_alive()
            continue
        if kind == "report":
            name, args, kwargs = payload
            getattr(reporter, name)(*args, **kwargs)
        elif kind == "result":
            return payload
        else:
            raise payload


class _QueueReporter:
    """The child's reporter: every report goes to the parent; cancelled() is the parent's flag."""

    def __init__(self, messages, cancel) -> None:
        self.messages, self.cancel = messages, cancel

    def _send(self, name: str, *args, **kwargs) -> None:
        self.messages.put(("report", (name, args, kwargs)))

    def log(self, message: str, *, level: str = "info") -> None:
        self._send("log", message, level=level)

    def progress(self, fraction: float) -> None:
        self._send("progress", fraction)

    def stage(self, name: str) -> None:
        self._send("stage", name)

    def metric(self, name: str, value: float, *, step: int | None = None, summary: bool = False) -> None:
        self._send("metric", name, value, step=step, summary=summary)

    def checkpoint(self, state: dict) -> None:
        self._send("checkpoint", state)

    def cancelled(self) -> bool:
        return self.cancel.is_set()


def _child(messages, cancel, parent: int, step: Callable, start: float, end: float, kwargs: dict) -> None:
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()
    try:
        result = step(span=Span(_QueueReporter(messages, cancel), start, end), **kwargs)
    except (JobError, Cancelled) as error:
        messages.put(("error", error))
    except BaseException:  # noqa: BLE001 - any other failure: raised in the parent with its traceback
        messages.put(("error", RuntimeError(traceback.format_exc())))
    else:
        messages.put(("result", result))


def _exit_without(parent: int) -> None:
    """A worker killed outright cannot stop its child: the child notices and goes too."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)
