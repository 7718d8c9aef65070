"""A bounded mixed load on loopback: N clients for S seconds browsing pages, reading the API,
submitting jobs and uploading, against the real stack this script starts (its own Redis, SQLite,
daphne and one Celery worker on both queues).

    .venv/bin/python bench/load.py                   # 50 clients, 60 s
    .venv/bin/python bench/load.py --clients 20 --seconds 20

Each client is a thread with its own signed-in session (five users of one team share them), and
waits THINK seconds (random, 1.5-3.5 s) between requests, so the load is bounded, as people's is.
Each request is one of:
  browse   the project, a model or a job page (HTML)
  api      the project's job list or one job (REST, token)
  submit   a compute probe (REST); each accepted job must end (succeeded, failed or cancelled)
  upload   a tus upload of 256 KiB: create, one PATCH, then terminate (quota stays flat)
The reference, in the same rounds, is the team page (one short list: the stack's floor).

After the load, the worker is given up to --drain seconds to finish the accepted jobs. Output:
p50/p95 per kind, `server_errors` (answers 5xx or no answer; must be 0), `throttled` (429s, by
the rate limits), and `lost_jobs` (accepted jobs that did not end; must be 0). Last line: JSON.
"""

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import defaultdict

from _harness import Stack, cpu_seconds, machine_busy_seconds, percentile

from tests.servers import start_worker, wait_for  # noqa: E402  (after _harness set the path)

USERS = 5
MODELS = 10
PASSWORD = "bench-pass-1234"
WEIGHTS = {"browse": 45, "api": 30, "submit": 5, "upload": 10, "reference": 10}
PROBE = {"rounds": 1, "seconds_per_round": 0.05, "matrix_size": 32, "queue": "optimize"}
CHUNK = os.urandom(256 * 1024)


def seed() -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from webapp.jobs.models import Job, JobState
    from webapp.projects.models import Project
    from webapp.registry.models import Artifact, Model
    from webapp.teams.models import Membership, Role, Team

    team = Team.objects.create(name="Load")
    users = []
    for index in range(USERS):
        user = get_user_model().objects.create_user(username=f"load{index}", password=PASSWORD)
        Membership.objects.create(team=team, user=user, role=Role.OWNER if index == 0 else Role.MEMBER)
        client = Client()
        client.force_login(user)
        users.append({"cookie": client.cookies[settings.SESSION_COOKIE_NAME].value,
                      "token": Token.objects.get_or_create(user=user)[0].key})
    project = Project.objects.create(team=team, name="Load")
    now = timezone.now()
    models = [Model.objects.create(project=project, name=f"net-{i}") for i in range(MODELS)]
    for model in models:
        Artifact.objects.create(model=model, origin="uploaded", format="onnx", precision="FP32", ready_at=now,
                                size_bytes=2**20, inspection={"parameters": 1000})
    jobs = Job.objects.bulk_create(Job(project=project, kind="probe", queue="optimize", state=JobState.SUCCEEDED,
                                       progress=1.0, finished_at=now, params=PROBE) for _ in range(200))
    connection.close()
    return {"team": team.id, "project": project.id, "models": [m.id for m in models], "jobs": [j.id for j in jobs],
            "users": users, "cookie_name": settings.SESSION_COOKIE_NAME}


class Client(threading.Thread):
    def __init__(self, base: str, world: dict, user: dict, until: float, results: "Results", seed: int) -> None:
        super().__init__(daemon=True)
        import requests

        self.base, self.world, self.until, self.results = base, world, until, results
        self.random = random.Random(seed)
        self.pages = requests.Session()
        self.pages.cookies.set(world["cookie_name"], user["cookie"], domain="127.0.0.1")
        self.rest = requests.Session()
        self.rest.headers["Authorization"] = f"Token {user['token']}"

    def run(self) -> None:
        time.sleep(self.random.uniform(0, 2))  # the clients arrive over two seconds
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.monotonic() < self.until:
            kind = self.random.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                status = getattr(self, kind)()
            except Exception as error:  # no answer at all counts as a server error
                status = f"{type(error).__name__}"
            self.results.add(kind, (time.perf_counter() - started) * 1000, status)
            time.sleep(self.random.uniform(1.5, 3.5))

    def _get(self, session, path: str) -> int:
        return session.get(self.base + path, allow_redirects=False, timeout=60).status_code

    def browse(self) -> int:
        world = self.world
        path = self.random.choice([f"/projects/{world['project']}/", f"/models/{self.random.choice(world['models'])}/",
                                   f"/jobs/{self.random.choice(world['jobs'])}/"])
        return self._get(self.pages, path)

    def reference(self) -> int:
        return self._get(self.pages, f"/teams/{self.world['team']}/")

    def api(self) -> int:
        if self.random.random() < 0.5:
            return self._get(self.rest, f"/api/v1/projects/{self.world['project']}/jobs/")
        return self._get(self.rest, f"/api/v1/jobs/{self.random.choice(self.world['jobs'])}/")

    def submit(self) -> int:
        response = self.rest.post(f"{self.base}/api/v1/projects/{self.world['project']}/jobs/",
                                 json={"kind": "probe", "params": PROBE}, timeout=60)
        if response.status_code == 201:
            self.results.accepted(response.json()["id"])
        return response.status_code

    def upload(self) -> int:
        import base64

        meta = f"filename {base64.b64encode(b'load.bin').decode()},project {base64.b64encode(str(self.world['project']).encode()).decode()}"
        tus = {"Tus-Resumable": "1.0.0"}
        created = self.rest.post(f"{self.base}/api/v1/uploads/", timeout=60, headers={
            **tus, "Upload-Length": str(len(CHUNK)), "Upload-Metadata": meta})
        if created.status_code != 201:
            return created.status_code
        location = self.base + created.headers["Location"] if created.headers["Location"].startswith("/") else created.headers["Location"]
        patched = self.rest.patch(location, data=CHUNK, timeout=60, headers={
            **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        ended = self.rest.delete(location, headers=tus, timeout=60)
        return max(patched.status_code, ended.status_code) if patched.status_code >= 400 or ended.status_code >= 400 else 200


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.jobs: list[int] = []

    def add(self, kind: str, ms: float, status) -> None:
        with self.lock:
            self.times[kind].append(ms)
            self.statuses[kind][str(status)] += 1

    def accepted(self, job_id: int) -> None:
        with self.lock:
            self.jobs.append(job_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--drain", type=float, default=180, help="how long the worker may take to end accepted jobs")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()
    with Stack(keep=args.keep) as stack:
        world = seed()
        worker = start_worker(stack.env, stack.log_dir, name="load")
        stack.services.append(worker)
        server, port = stack.start_daphne()
        from webapp.hosts.models import WorkerHost
        wait_for(lambda: WorkerHost.objects.filter(hostname__startswith="load@", reported_at__isnull=False).exists(),
                 timeout=120, what="the worker to report", interval=0.5)
        results = Results()
        base = f"http://127.0.0.1:{port}"
        busy_before, cpu_before = machine_busy_seconds(), cpu_seconds(server.pid)
        until = time.monotonic() + args.seconds
        clients = [Client(base, world, world["users"][i % USERS], until, results, seed=i) for i in range(args.clients)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=args.seconds + 120)
        daphne_cpu = cpu_seconds(server.pid) - cpu_before
        busy = machine_busy_seconds() - busy_before

        from webapp.jobs.models import TERMINAL_STATES, Job

        def ended() -> bool:
            return Job.objects.filter(id__in=results.jobs, state__in=TERMINAL_STATES).count() == len(results.jobs)

        started = time.monotonic()
        try:
            wait_for(ended, timeout=args.drain, what="the accepted jobs to end", interval=1)
        except TimeoutError:
            pass
        drained = time.monotonic() - started
        done = Job.objects.filter(id__in=results.jobs, state__in=TERMINAL_STATES)
        lost = len(results.jobs) - done.count()
        succeeded = done.filter(state="succeeded").count()
    summary = {"clients": args.clients, "seconds": args.seconds}
    server_errors = throttled = requests_made = 0
    for kind in WEIGHTS:
        values = sorted(results.times.get(kind, []))
        statuses = dict(results.statuses.get(kind, {}))
        requests_made += len(values)
        server_errors += sum(n for status, n in statuses.items() if not status.isdigit() or int(status) >= 500)
        throttled += statuses.get("429", 0)
        summary[f"{kind}_requests"] = len(values)
        summary[f"{kind}_p50_ms"] = round(statistics.median(values), 1) if values else None
        summary[f"{kind}_p95_ms"] = round(percentile(values, 95), 1)
        print(f"{kind:>9}: {len(values):5d} requests  p50 {summary[f'{kind}_p50_ms']} ms  p95 "
              f"{summary[f'{kind}_p95_ms']} ms  answers {statuses}")
    summary.update(requests=requests_made, server_errors=server_errors, throttled=throttled,
                   jobs_accepted=len(results.jobs), jobs_succeeded=succeeded, lost_jobs=lost,
                   drain_seconds=round(drained, 1))
    print(f"jobs: {len(results.jobs)} accepted, {succeeded} succeeded, {lost} lost (drained in {drained:.0f} s); "
          f"daphne used {daphne_cpu:.0f} s of CPU, the machine {busy:.0f} s in {args.seconds:.0f} s")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
