"""Live job events: N websocket clients watch one job while a worker-side emitter reports R events/s.

    .venv/bin/python bench/events.py [--clients 50] [--rate 100] [--seconds 10]

Everything it needs is started here and stopped at the end: a private data folder with a fresh
SQLite database (`manage.py migrate`), its own redis-server, daphne serving webapp.asgi:application.

Vintner's path: a signed-in user's N clients connect to ws://.../ws/jobs/<id>/?after=0 (session
cookie + Origin, through the real auth, origin check and JobConsumer); the emitter, in this
process, drives the real workers.progress.JobReporter as pipeline code does, calling
reporter.log("<i> <time.time()>") on an absolute schedule of R per second. The reporter writes in
batches (events_append every 0.1 s: rows in SQLite, then a doorbell on the channel layer).
Latency = time a client received event i - time it was emitted (same clock: one machine).
After the emitter stops and the reporter has flushed, clients are given a drain period; then
lost = events a client never received, duplicated = events it received more than once (both
summed over clients).

Both paths run in alternating rounds (--rounds, default 3; the order swapped every other round),
each vintner round on a fresh job, and the figures are the medians of the rounds with their spread.

Reference, in the same run: the bare transport the app is built on, channels_redis group_send
from a long-lived loop (no reporter, no database) -> a minimal consumer in another daphne
(bench/_reference_asgi.py) -> the same N websocket clients; its p95 is `reference_p95_ms`. It
rings at the reporter's cadence (every 0.1 s), so both paths carry the same batching window
(up to 100 ms, 50 ms on average, by design) and the difference of the p95s is what Vintner's path
adds: the database write, the per-bell event loop of async_to_sync, auth'd consumer logic.
--reference-batch 0 rings once per event instead (the transport's floor, 10x more bells).

Clients run on one asyncio loop in this process. Emitter, clients, daphne and redis share the
machine, so the CPU they use is printed too. The last line of output is one JSON object.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time

from _harness import Stack, cpu_seconds, machine_busy_seconds, pace, percentile, spread

DRAIN_SECONDS = 10.0  # how long clients may still receive after the last event was written
SETTLE_SECONDS = 0.5  # then how long we keep listening for duplicates


# --- the watched job ----------------------------------------------------------------------------
def make_job() -> tuple[int, str, str]:
    """A user in a team with a project (made once) and a new running job (as a worker would have claimed it);
    returns the job id, its lease owner and the user's session cookie."""
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from webapp.jobs.models import Job, JobState
    from webapp.projects.models import Project
    from webapp.teams.models import Membership, Role, Team

    user = get_user_model().objects.filter(username="bench").first()
    if user is None:  # the first round's; later rounds add a job to the same project
        user = get_user_model().objects.create_user(username="bench", email="bench@example.com", password="bench-pass-1234")
        team = Team.objects.create(name="Bench")
        Membership.objects.create(team=team, user=user, role=Role.OWNER)
        Project.objects.create(team=team, name="Bench", created_by=user)
    project = Project.objects.get(created_by=user)
    owner = "bench-worker@localhost:1"
    now = timezone.now()
    job = Job.objects.create(
        project=project, kind="probe", created_by=user, params={}, queue="optimize",
        state=JobState.RUNNING, worker_host="localhost", attempts=1, started_at=now, enqueued_at=now,
        lease_owner=owner, lease_expires_at=now + timedelta(hours=1),
    )
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    connection.close()
    return job.id, owner, cookie


# --- emitters (each runs in its own thread) -----------------------------------------------------
class Stages:
    """Where an event's time goes on Vintner's path, from timestamps taken in this process:
    when the reporter's write of it began (events_append), when the transaction had committed
    and the doorbell was being rung (group_send), and when the bell was out. Watching changes
    nothing the app does: the same functions run, wrapped."""

    def __init__(self) -> None:
        self.write_started: dict[int, float] = {}  # event index -> time
        self.bell_started: dict[int, float] = {}
        self.bell_sent: dict[int, float] = {}
        self.writes: list[float] = []  # seconds per events_append call
        self.bells: list[float] = []  # seconds per group_send
        self.flush_starts: list[float] = []

    @staticmethod
    def _indices(items) -> list[int]:
        return [int(data["message"].split()[0]) for kind, data in items if kind == "log"]

    def install(self):
        """Wrap workers.progress.events_append and webapp.jobs.events.broadcast; returns an undo."""
        import webapp.jobs.events as events_module
        import workers.progress as progress_module

        original_append, original_broadcast = progress_module.events_append, events_module.broadcast

        def events_append(job_id, items, **fields):
            started = time.time()
            self.flush_starts.append(started)
            for index in self._indices(items):
                self.write_started[index] = started
            try:
                return original_append(job_id, items, **fields)
            finally:
                self.writes.append(time.time() - started)

        def broadcast(group, payload):
            from asgiref.sync import async_to_sync
            from channels.layers import get_channel_layer
            from django.db import transaction

            indices = [int(e["data"]["message"].split()[0]) for e in payload.get("events", ()) if e["kind"] == "log"]

            def send() -> None:  # as webapp.core.broadcast.broadcast does, timed
                began = time.time()
                async_to_sync(get_channel_layer().group_send)(group, {"type": "feed.event", "payload": payload})
                ended = time.time()
                self.bells.append(ended - began)
                for index in indices:
                    self.bell_started[index], self.bell_sent[index] = began, ended

            transaction.on_commit(send)

        progress_module.events_append, events_module.broadcast = events_append, broadcast

        def undo() -> None:
            progress_module.events_append, events_module.broadcast = original_append, original_broadcast

        return undo

    def breakdown(self, watchers) -> dict[str, dict[str, float]]:
        """p50/p95 in ms of each stage, over every (client, event) pair."""
        stages: dict[str, list[float]] = {"batching wait": [], "db write": [], "group_send": [], "fan-out to client": []}
        for watcher in watchers:
            for index, (emitted, received) in watcher.times.items():
                if index not in self.bell_sent:
                    continue
                stages["batching wait"].append(self.write_started[index] - emitted)
                stages["db write"].append(self.bell_started[index] - self.write_started[index])
                stages["group_send"].append(self.bell_sent[index] - self.bell_started[index])
                stages["fan-out to client"].append(received - self.bell_sent[index])
        periods = sorted(b - a for a, b in zip(self.flush_starts, self.flush_starts[1:]))
        stages["flush period"] = periods
        result = {}
        for name, values in stages.items():
            values.sort()
            result[name] = {"p50_ms": percentile(values, 50) * 1000, "p95_ms": percentile(values, 95) * 1000,
                            "max_ms": (values[-1] if values else 0.0) * 1000}
        return result


def emit_through_reporter(job_id: int, owner: str, events: int, rate: float, stages: Stages | None = None) -> None:
    """What pipeline code does: report through the JobReporter it is handed."""
    from django.db import connection

    from workers.progress import JobReporter

    undo = stages.install() if stages else None
    reporter = JobReporter(job_id, owner).start()
    try:
        start = time.monotonic()
        for i in range(events):
            pace(start, i, rate)
            reporter.log(f"{i} {time.time()!r}")
    finally:
        reporter.close()  # writes what is still buffered
        connection.close()
        if undo:
            undo()


def emit_bare_group_send(group: str, events: int, rate: float, batch_seconds: float) -> None:
    """The floor: channels_redis group_send from a long-lived event loop, no database. Events are
    sent in batches every `batch_seconds`, the cadence of the reporter's writes, or one
    group_send per event when batch_seconds is 0."""
    from channels.layers import get_channel_layer

    async def send_all() -> None:
        layer = get_channel_layer()

        async def ring(batch: list[dict]) -> None:
            await layer.group_send(group, {"type": "feed.event", "payload": {"type": "events", "events": batch}})

        async def until(moment: float) -> None:
            delay = moment - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

        start = time.monotonic()
        next_ring = start + batch_seconds
        batch: list[dict] = []
        try:
            for i in range(events):
                due = start + i / rate
                while batch_seconds and next_ring <= due:
                    await until(next_ring)
                    if batch:
                        await ring(batch)
                        batch = []
                    next_ring += batch_seconds
                await until(due)
                now = time.time()
                batch.append({"seq": i + 1, "kind": "log", "data": {"level": "info", "message": f"{i} {now!r}"},
                              "at": now})
                if not batch_seconds:
                    await ring(batch)
                    batch = []
            if batch:
                await until(next_ring)
                await ring(batch)
        finally:
            await layer.close_pools()

    asyncio.run(send_all())


# --- clients -------------------------------------------------------------------------------------
class Watcher:
    """One websocket client: when it first saw each event, and how often it saw one again."""

    def __init__(self) -> None:
        self.times: dict[int, tuple[float, float]] = {}  # event index -> (emitted, first received)
        self.seen_seqs: set[int] = set()
        self.duplicated = 0
        self.frames = 0
        self.error: str | None = None

    def take(self, raw: str | bytes, received: float) -> None:
        self.frames += 1
        for event in json.loads(raw).get("events", ()):
            if event["seq"] in self.seen_seqs:
                self.duplicated += 1
                continue
            self.seen_seqs.add(event["seq"])
            if event["kind"] == "log":
                index, emitted = event["data"]["message"].split()
                self.times.setdefault(int(index), (float(emitted), received))


async def watch(url: str, headers: dict[str, str], watcher: Watcher, connected: asyncio.Event,
                stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    try:
        async with connect(url, additional_headers=headers, compression=None, proxy=None, max_size=None,
                           open_timeout=30, ping_interval=None) as ws:
            connected.set()
            receiving = asyncio.ensure_future(_receive(ws, watcher))
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            receiving.cancel()
            stopping.cancel()
            if receiving in done and receiving.exception():
                raise receiving.exception()
    except Exception as exc:  # reported; every event it missed counts as lost
        watcher.error = f"{type(exc).__name__}: {exc}"
        connected.set()


async def _receive(ws, watcher: Watcher) -> None:
    async for raw in ws:
        watcher.take(raw, time.time())


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late the clients' event loop wakes up: a busy client side shows up here."""
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.01)
        samples.append(time.monotonic() - before - 0.01)


async def run_phase(name: str, url: str, headers: dict[str, str], clients: int, events: int,
                    emitter, pids: dict[str, int | None], stages: Stages | None = None) -> dict:
    """Connect the clients, run the emitter in a thread, drain, and measure."""
    watchers = [Watcher() for _ in range(clients)]
    stop = asyncio.Event()
    connected = [asyncio.Event() for _ in range(clients)]
    began = time.monotonic()
    tasks = [asyncio.ensure_future(watch(url, headers, w, c, stop)) for w, c in zip(watchers, connected)]
    await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), timeout=60)
    connect_seconds = time.monotonic() - began
    failed = [w.error for w in watchers if w.error]
    if failed:
        stop.set()
        await asyncio.gather(*tasks)
        raise RuntimeError(f"{name}: {len(failed)} of {clients} clients failed to connect; first: {failed[0]}")
    await asyncio.sleep(0.5)  # let the server side settle after the connection burst

    lag: list[float] = []
    lag_task = asyncio.ensure_future(loop_lag(lag, stop))
    cpu_before = {proc: cpu_seconds(pid) for proc, pid in pids.items()}
    machine_before = machine_busy_seconds()
    emit_began = time.monotonic()
    thread = threading.Thread(target=emitter, name=f"{name}-emitter", daemon=True)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.05)
    emit_seconds = time.monotonic() - emit_began
    # CPU while events flow (the drain below would dilute it).
    cpu = {proc: 100 * (cpu_seconds(pid) - cpu_before[proc]) / emit_seconds for proc, pid in pids.items()}
    # Everything else on the machine (other people's tests...): when it is high, the numbers are noisy.
    cpu["rest of machine"] = max(0.0, 100 * (machine_busy_seconds() - machine_before) / emit_seconds - sum(cpu.values()))
    drain_deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_deadline and any(len(w.times) < events and not w.error for w in watchers):
        await asyncio.sleep(0.05)
    await asyncio.sleep(SETTLE_SECONDS)
    stop.set()
    await asyncio.gather(*tasks, lag_task)

    latencies = sorted(received - emitted for w in watchers for emitted, received in w.times.values())
    lag.sort()
    return {
        "name": name,
        "events": events,
        "emit_seconds": emit_seconds,
        "connect_seconds": connect_seconds,
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
        "lost": sum(events - len([i for i in w.times if 0 <= i < events]) for w in watchers),
        "duplicated": sum(w.duplicated for w in watchers),
        "frames": sum(w.frames for w in watchers),
        "errors": [w.error for w in watchers if w.error],
        "cpu_percent": cpu,
        "client_loop_lag_p95_ms": percentile(lag, 95) * 1000,
        "stages": stages.breakdown(watchers) if stages else None,
    }


def describe(result: dict, clients: int, rate: float) -> str:
    cpu = ", ".join(f"{proc} {pct:.0f}%" for proc, pct in result["cpu_percent"].items())
    lines = [
        f"{result['name']}: {clients} clients, {rate:g} events/s, {result['events']} events "
        f"(emitted in {result['emit_seconds']:.2f} s; clients connected in {result['connect_seconds']:.2f} s)",
        f"  emit -> received  p50 {result['p50_ms']:.1f} ms  p95 {result['p95_ms']:.1f} ms  "
        f"p99 {result['p99_ms']:.1f} ms  max {result['max_ms']:.1f} ms  "
        f"({result['samples']} samples, {result['frames']} frames)",
        f"  lost {result['lost']}  duplicated {result['duplicated']}",
        f"  CPU while emitting: {cpu} (100% = one core; {os.cpu_count()} here); "
        f"client loop lag p95 {result['client_loop_lag_p95_ms']:.1f} ms",
    ]
    for stage, values in (result["stages"] or {}).items():
        lines.append(f"    {stage:<18} p50 {values['p50_ms']:6.1f} ms  p95 {values['p95_ms']:6.1f} ms  "
                     f"max {values['max_ms']:6.1f} ms")
    for error in result["errors"][:3]:
        lines.append(f"  client error: {error}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="websocket clients watching the job (default 50)")
    parser.add_argument("--rate", type=float, default=100, help="events per second the emitter reports (default 100)")
    parser.add_argument("--seconds", type=float, default=10, help="how long the emitter runs (default 10)")
    parser.add_argument("--reference-batch", type=float, default=None, metavar="SECONDS",
                        help="group events of the reference path every SECONDS (default: the reporter's flush "
                             "interval); 0 sends one group_send per event")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each path (default 3)")
    parser.add_argument("--skip-reference", action="store_true", help="do not measure the bare group_send path")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (logs, database) for inspection")
    args = parser.parse_args()
    if args.clients < 1 or args.rate <= 0 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--clients, --rate, --seconds and --rounds must be positive")
    events = max(1, round(args.rate * args.seconds))

    with Stack(keep=args.keep) as stack:
        import inspect

        from _reference_asgi import GROUP

        from workers.progress import JobReporter

        flush_seconds = inspect.signature(JobReporter).parameters["flush_seconds"].default
        batch_seconds = flush_seconds if args.reference_batch is None else args.reference_batch
        how = f"every {batch_seconds:g} s" if batch_seconds else "one per event"
        pids = {"bench": None, "redis": stack.redis.pid}
        app, app_port = stack.start_daphne("webapp.asgi:application")
        bare, bare_port = (None, None) if args.skip_reference else stack.start_daphne("bench._reference_asgi:application")

        def vintner_round() -> dict:
            job_id, owner, cookie = make_job()  # a fresh job a round: each starts from event 0
            stages = Stages()
            return asyncio.run(run_phase(
                "vintner", f"ws://127.0.0.1:{app_port}/ws/jobs/{job_id}/?after=0",
                {"Cookie": cookie, "Origin": f"http://127.0.0.1:{app_port}"},
                args.clients, events, lambda: emit_through_reporter(job_id, owner, events, args.rate, stages),
                {**pids, "daphne": app.pid}, stages,
            ))

        def reference_round() -> dict:
            return asyncio.run(run_phase(
                f"reference (bare group_send, {how})", f"ws://127.0.0.1:{bare_port}/ws/ref/",
                {"Origin": f"http://127.0.0.1:{bare_port}"},
                args.clients, events, lambda: emit_bare_group_send(GROUP, events, args.rate, batch_seconds),
                {**pids, "daphne": bare.pid},
            ))

        # Alternating rounds, the order swapped every other one, so what the machine does meanwhile
        # lands on both paths alike; the figures are the medians of the rounds.
        rounds: dict[str, list[dict]] = {"vintner": [], "reference": []}
        for index in range(args.rounds):
            order = ["vintner", "reference"] if index % 2 == 0 else ["reference", "vintner"]
            for path in order:
                if path == "vintner":
                    rounds["vintner"].append(vintner_round())
                elif bare is not None:
                    rounds["reference"].append(reference_round())
        stack.stop_service(app)
        if bare is not None:
            stack.stop_service(bare)

    def medians(results: list[dict]) -> dict:
        return {key: statistics.median(r[key] for r in results) for key in ("p50_ms", "p95_ms", "p99_ms")}

    vintner, reference = rounds["vintner"], rounds["reference"]
    for result in vintner + reference:
        print(describe(result, args.clients, args.rate))
    figures = medians(vintner)
    lost, duplicated = sum(r["lost"] for r in vintner), sum(r["duplicated"] for r in vintner)
    reference_p95 = medians(reference)["p95_ms"] if reference else None
    if reference:
        print(f"Vintner's path adds {figures['p95_ms'] - reference_p95:.1f} ms at p95 over the bare path "
              f"(medians of {args.rounds} alternating rounds).")
    goal = figures["p95_ms"] <= 200 and lost == 0 and duplicated == 0
    print(f"goal (p95 <= 200 ms, nothing lost or duplicated): {'met' if goal else 'NOT met'}")
    def number(value: float) -> float | int:
        return int(value) if float(value).is_integer() else value

    print(json.dumps({
        "clients": args.clients,
        "rate": number(args.rate),
        "seconds": number(args.seconds),
        "events": events,
        "p50_ms": round(figures["p50_ms"], 1),
        "p95_ms": round(figures["p95_ms"], 1),
        "p99_ms": round(figures["p99_ms"], 1),
        "lost": lost,
        "duplicated": duplicated,
        "reference_p95_ms": round(reference_p95, 1) if reference else None,
        "rounds": args.rounds,
        "spread": {"vintner_p95": spread([r["p95_ms"] for r in vintner]),
                   "reference_p95": spread([r["p95_ms"] for r in reference]) if reference else None},
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
