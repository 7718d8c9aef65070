"""Page speed as data grows: the project, model and job pages of a project with 1,000 jobs and
100 models (each with an IR artifact whose graph, for the graph page, is about 1.7 MB: the
largest seen), served by the real app under daphne, one signed-in client.

    .venv/bin/python bench/pages.py                  # 200 requests of each page
    .venv/bin/python bench/pages.py --requests 400 --graph-mb 1.7

Rounds alternate the pages and the reference (the team page: one short list, the same stack's
floor: session, access check, template, daphne). Output: p50/p95 per page; the last line is one
JSON object with `project_p95_ms`, `model_p95_ms`, `job_p95_ms` (goal: each < 150) and
`reference_p95_ms`.
"""

import argparse
import json
import statistics
import sys
import time

from _harness import Stack, cpu_seconds, machine_busy_seconds, percentile

JOBS, MODELS, EVENTS_PER_JOB = 1000, 100, 20


def graph_of(megabytes: float) -> dict:
    """A graph shaped like workers.pipeline.graphs makes, about `megabytes` as JSON."""
    node = {"type": "Convolution", "attrs": {"strides": "1,1", "pads_begin": "1,1", "pads_end": "1,1",
                                            "dilations": "1,1", "auto_pad": "explicit"},
            "outputs": [{"shape": [1, 64, 56, 56], "type": "f32"}]}
    count = max(1, int(megabytes * 2**20 / (len(json.dumps(node)) + 60)))
    nodes = [{"id": str(i), "name": f"stage{i // 50}/block{i % 50}/conv", **node} for i in range(count)]
    edges = [{"from": str(i), "to": str(i + 1)} for i in range(count - 1)]
    return {"nodes": nodes, "edges": edges, "node_count": count}


def seed(graph_mb: float) -> dict:
    """A user, a team, a project holding 1,000 jobs (with events) and 100 models of 2 artifacts."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from webapp.datasets.models import Dataset
    from webapp.jobs.models import Job, JobEvent, JobState
    from webapp.projects.models import Project
    from webapp.registry.models import Artifact, Model
    from webapp.teams.models import Membership, Role, Team

    user = get_user_model().objects.create_user(username="bench", email="bench@example.com", password="bench-pass-1234")
    team = Team.objects.create(name="Bench")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="Bench", created_by=user)
    now = timezone.now()
    graph = graph_of(graph_mb)
    states = [JobState.SUCCEEDED] * 8 + [JobState.FAILED, JobState.CANCELLED]
    with transaction.atomic():
        for index in range(5):
            Dataset.objects.create(project=project, name=f"set{index}", archive_name="set.zip", archive_sha256="0" * 64,
                                   imported_at=now, image_count=1000, classes=["a", "b"], size_bytes=2**20)
        models = Model.objects.bulk_create(Model(project=project, name=f"model-{i:03d}", created_by=user) for i in range(MODELS))
        jobs = Job.objects.bulk_create(
            Job(project=project, kind="probe", created_by=user, queue="optimize", state=states[i % len(states)],
                progress=1.0, params={"rounds": 3, "seconds_per_round": 0.1, "matrix_size": 64}, attempts=1,
                finished_at=now, last_seq=EVENTS_PER_JOB, result={"devices": {"cpu": {"median_gflops": 12.5}}})
            for i in range(JOBS))
        JobEvent.objects.bulk_create(
            (JobEvent(job=job, seq=seq, kind="log", data={"level": "info", "message": f"Round {seq}/{EVENTS_PER_JOB}"})
             for job in jobs for seq in range(1, EVENTS_PER_JOB + 1)), batch_size=5000)
        for model in models:
            source = Artifact.objects.create(model=model, origin="uploaded", format="state_dict", precision="FP32",
                                             ready_at=now, size_bytes=45 * 2**20, job=jobs[model.id % JOBS],
                                             inspection={"parameters": 11_689_512})
            Artifact.objects.create(model=model, origin="converted", format="openvino_ir", precision="FP32", parent=source,
                                    ready_at=now, size_bytes=45 * 2**20, job=jobs[(model.id + 1) % JOBS],
                                    inspection={"parameters": 11_689_512}, graph=graph,
                                    metrics={"conversion": {"max_abs_diff": 1e-5, "top1_agreement": 1.0}})
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    target = {"team": f"/teams/{team.id}/", "project": f"/projects/{project.id}/",
              "model": f"/models/{models[MODELS // 2].id}/", "job": f"/jobs/{jobs[JOBS // 2].id}/",
              "cookie": (settings.SESSION_COOKIE_NAME, cookie)}
    connection.close()
    return target


def measure(base: str, target: dict, requests_each: int) -> dict[str, list[float]]:
    import requests

    session = requests.Session()
    session.cookies.set(*target["cookie"], domain="127.0.0.1")
    pages = {"project": target["project"], "model": target["model"], "job": target["job"], "reference": target["team"]}
    for path in pages.values():  # warm up: templates compiled, connections open
        for _ in range(3):
            response = session.get(base + path, allow_redirects=False)
            if response.status_code != 200:
                sys.exit(f"{path} answered {response.status_code}")
    times: dict[str, list[float]] = {name: [] for name in pages}
    for _ in range(requests_each):  # alternating rounds: one of each, in turn
        for name, path in pages.items():
            started = time.perf_counter()
            response = session.get(base + path, allow_redirects=False)
            times[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests of each page")
    parser.add_argument("--graph-mb", type=float, default=1.7, help="size of each IR artifact's inspection graph")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()
    with Stack(keep=args.keep) as stack:
        started = time.monotonic()
        target = seed(args.graph_mb)
        print(f"seeded {JOBS} jobs, {MODELS} models in {time.monotonic() - started:.1f} s", file=sys.stderr)
        server, port = stack.start_daphne()
        cpu_before, busy_before, wall_before = cpu_seconds(server.pid), machine_busy_seconds(), time.monotonic()
        times = measure(f"http://127.0.0.1:{port}", target, args.requests)
        wall = time.monotonic() - wall_before
        daphne_cpu = cpu_seconds(server.pid) - cpu_before
        others = machine_busy_seconds() - busy_before - daphne_cpu
    summary = {"jobs": JOBS, "models": MODELS, "graph_mb": args.graph_mb, "requests": args.requests}
    for name, values in times.items():
        values.sort()
        summary[f"{name}_p50_ms"] = round(statistics.median(values), 1)
        summary[f"{name}_p95_ms"] = round(percentile(values, 95), 1)
        print(f"{name:>9}: p50 {summary[f'{name}_p50_ms']:7.1f} ms   p95 {summary[f'{name}_p95_ms']:7.1f} ms")
    print(f"daphne used {daphne_cpu:.1f} s of CPU in {wall:.1f} s; the rest of the machine {others:.1f} s "
          "(a busy machine makes these figures noisy)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
