"""The reporter handed to pipeline code. It buffers what the pipeline says and a background
thread writes it in batches (events_append), so a loop that reports thousands of times a
second costs a few writes a second. It never drops the last state: progress and stage keep
their latest value, metrics are averaged per window, log lines are all kept (up to a cap).
The same thread renews the job's lease and notices a cancel request."""

import logging
import threading
import time

from django.conf import settings
from django.db import connection

from webapp.jobs import services
from webapp.jobs.events import events_append
from webapp.jobs.models import Job

log = logging.getLogger(__name__)

MAX_LOG_LINES_PER_FLUSH = 2000
CANCEL_POLL_SECONDS = 1.0


class _Window:
    """Points of one metric since the last write: written as their mean at the last step."""

    def __init__(self, now: float) -> None:
        self.opened, self.total, self.count, self.step = now, 0.0, 0, None

    def add(self, value: float, step: int | None) -> None:
        self.total += value
        self.count += 1
        self.step = step if step is not None else self.step

    def point(self, name: str) -> dict:
        point = {"name": name, "value": self.total / self.count}
        if self.step is not None:
            point["step"] = self.step
        if self.count > 1:
            point["samples"] = self.count
        return point


class JobReporter:
    def __init__(
        self,
        job_id: int,
        owner: str,
        *,
        progress: float = 0.0,
        stage: str = "",
        flush_seconds: float = 0.1,
        metric_window_seconds: float = 0.5,
    ) -> None:
        self.job_id, self.owner = job_id, owner
        self.flush_seconds, self.metric_window_seconds = flush_seconds, metric_window_seconds
        self._lock = threading.Lock()  # guards the buffers below
        self._flush_lock = threading.Lock()  # one writer at a time
        self._logs: list[dict] = []
        self._dropped_logs = 0
        self._stages: list[str] = []
        self._progress, self._progress_dirty = progress, False
        self._stage = stage
        self._windows: dict[str, _Window] = {}
        self._summaries: list[dict] = []
        self._checkpoint: dict | None = None
        self._unwritten: tuple[list[tuple[str, dict]], dict] = ([], {})  # a batch whose write failed
        self._cancel_seen = False
        self._lease_lost = False
        self._lease_renewed = self._cancel_polled = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{job_id}-reporter", daemon=True)

    # --- what pipeline code calls -------------------------------------------------------------
    def log(self, message: str, *, level: str = "info") -> None:
        with self._lock:
            if len(self._logs) < MAX_LOG_LINES_PER_FLUSH:
                self._logs.append({"level": level, "message": str(message)})
            else:
                self._dropped_logs += 1

    def progress(self, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        with self._lock:
            if fraction > self._progress:
                self._progress, self._progress_dirty = fraction, True

    def stage(self, name: str) -> None:
        with self._lock:
            if name != self._stage:
                self._stage = name
                self._stages.append(name)

    def metric(self, name: str, value: float, *, step: int | None = None, summary: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if summary:  # a point that stands for itself (an epoch's result): never averaged
                self._summaries.append({"name": name, "value": float(value), **({"step": step} if step is not None else {})})
            else:
                self._windows.setdefault(name, _Window(now)).add(float(value), step)

    def checkpoint(self, state: dict) -> None:
        with self._lock:
            self._checkpoint = state

    def cancelled(self) -> bool:
        return self._cancel_seen or self._lease_lost

    @property
    def lease_lost(self) -> bool:
        return self._lease_lost

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "JobReporter":
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and write everything still buffered."""
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self.flush(final=True)
        except Job.DoesNotExist:  # deleted with its project or team: nobody is left to read it
            self._lease_lost = True

    def _run(self) -> None:
        try:
            next_tick = time.monotonic()
            while True:
                next_tick += self.flush_seconds  # a fixed schedule: a slow write does not stretch it
                if self._stop.wait(max(0.0, next_tick - time.monotonic())):
                    break
                try:
                    self.flush()
                    self._keep_lease()
                    self._poll_cancel()
                except Job.DoesNotExist:  # deleted with its project or team: the step stops
                    self._lease_lost = True
                except Exception:  # a failed write is retried on the next tick; the buffers are kept
                    log.exception("job %s: reporter flush failed", self.job_id)
        finally:
            connection.close()  # this thread's own connection

    def _keep_lease(self) -> None:
        if time.monotonic() - self._lease_renewed < settings.JOB_LEASE_SECONDS / 3:
            return
        self._lease_renewed = time.monotonic()
        if not services.job_renew_lease(job_id=self.job_id, owner=self.owner):
            self._lease_lost = True

    def _poll_cancel(self) -> None:
        if time.monotonic() - self._cancel_polled < CANCEL_POLL_SECONDS:
            return
        self._cancel_polled = time.monotonic()
        if services.job_cancel_requested(job_id=self.job_id):
            self._cancel_seen = True

    def flush(self, *, final: bool = False) -> None:
        with self._flush_lock:
            items, fields, checkpoint = self._drain(final)
            # A batch that failed to write goes first, its fields under the newer ones.
            items, fields = self._unwritten[0] + items, {**self._unwritten[1], **fields}
            try:
                if items or fields:
                    events_append(self.job_id, items, **fields)
            except Exception:
                self._unwritten = (items, fields)
                if checkpoint is not None:
                    with self._lock:
                        self._checkpoint = self._checkpoint or checkpoint
                raise
            self._unwritten = ([], {})
            if checkpoint is not None:
                services.job_save_checkpoint(job_id=self.job_id, owner=self.owner, checkpoint=checkpoint)

    def _drain(self, final: bool) -> tuple[list[tuple[str, dict]], dict, dict | None]:
        now = time.monotonic()
        with self._lock:
            items: list[tuple[str, dict]] = [("stage", {"stage": stage}) for stage in self._stages]
            items += [("log", line) for line in self._logs]
            if self._dropped_logs:
                note = f"{self._dropped_logs} log lines dropped: the job logged faster than can be kept."
                items.append(("log", {"level": "warning", "message": note}))
            for name in [n for n, w in self._windows.items() if final or now - w.opened >= self.metric_window_seconds]:
                items.append(("metric", self._windows.pop(name).point(name)))
            items += [("metric", point) for point in self._summaries]
            self._summaries = []
            fields = {"stage": self._stage} if self._stages else {}
            if self._progress_dirty:
                items.append(("progress", {"progress": self._progress}))
                fields["progress"] = self._progress
            checkpoint = self._checkpoint
            self._logs, self._stages, self._dropped_logs, self._progress_dirty, self._checkpoint = [], [], 0, False, None
        return items, fields, checkpoint
