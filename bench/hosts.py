"""Vintner on several hosts, on one machine: Postgres, SeaweedFS's S3 gateway, Redis, daphne, a
`train` and an `optimize` worker (concurrency 2), each with its own data folder (tests/hosts.py).

1. The journey of tests/test_hosts.py (dataset upload → train → convert → quantize → benchmark →
   download, each worker killed once mid-job), then the storage sweep: `journey_ok`, `orphans`
   (objects no row names, rows naming missing objects, wrong checksums), `shared_paths` (a host's
   data folder named in the database).
2. A 2 GB object: uploaded through webapp/core/files.py (`s3_upload_mb_per_s`) against boto3's
   plain `upload_file` in alternating rounds (`reference_upload_mb_per_s`); staged by a worker
   process (`worker_rss_growth_mb`, its peak RSS over its own after start-up); downloaded through
   daphne as an IR artifact's zip (`first_byte_s`, `web_rss_growth_mb` sampled every 50 ms, `download_mb_per_s`).

    .venv/bin/python bench/hosts.py            # --gb 2 --rounds 2
"""

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
import traceback
from pathlib import Path

from _harness import cpu_seconds  # noqa: F401  (first: runs us under the project's virtualenv)

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.hosts import Hosts, journey, shared_paths, storage_mismatches  # noqa: E402

BLOCK = 2**20

UPLOAD = """
import json, time
from pathlib import Path
from webapp.core import files
started = time.monotonic()
files.store_copy(Path({path!r}), {key!r})
print(json.dumps({{"seconds": time.monotonic() - started}}))
"""
REFERENCE_UPLOAD = """
import json, time, boto3
from django.core.files.storage import default_storage
started = time.monotonic()
default_storage.bucket.upload_file({path!r}, {key!r})
print(json.dumps({{"seconds": time.monotonic() - started}}))
"""
STAGE = """
import json, resource
from pathlib import Path
from webapp.core import files
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
files.local_file({key!r}, Path({scratch!r}))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"growth_mb": (after - before) / 1024}}))
"""
ARTIFACT = """
import json
from django.contrib.auth import get_user_model
from django.utils import timezone
from webapp.core.tokens import token_issue
from webapp.registry.models import Artifact, Model
alice = get_user_model().objects.get(username="alice")
model = Model.objects.create(project_id={project}, name="big", created_by=alice)
artifact = Artifact.objects.create(model=model, origin="uploaded", format="openvino_ir", ready_at=timezone.now(),
    files=[{{"name": "model.xml", "size": {xml_size}, "sha256": "0" * 64}},
           {{"name": "model.bin", "size": {size}, "sha256": "0" * 64}}],
    primary="model.xml", size_bytes={size} + {xml_size})
print(json.dumps({{"artifact": artifact.id, "token": token_issue(user=alice)[1]}}))
"""


def shell(hosts: Hosts, code: str) -> dict:
    return json.loads(hosts.manage("shell", "-c", code).strip().splitlines()[-1])


def big_file(path: Path, size: int) -> None:
    block = Path("/dev/urandom").open("rb").read(8 * BLOCK)  # incompressible, written without CPU per byte
    with open(path, "wb") as out:
        for _ in range(size // len(block)):
            out.write(block)


def rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def download(hosts: Hosts, artifact: int, token: str) -> dict:
    """The artifact through daphne, read as it arrives, while daphne's memory is sampled."""
    pid, samples, done = hosts.daphne.pid, [], threading.Event()
    headers = {"Authorization": f"Token {token}"}
    with requests.get(f"{hosts.url}/api/v1/artifacts/{artifact}/download/", stream=True, headers=headers) as warm:
        next(warm.iter_content(BLOCK))  # the app is loaded on its first request: not what is measured
    before = rss_mb(pid)

    def sample() -> None:
        while not done.is_set():
            samples.append(rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, first, total = time.monotonic(), None, 0
    with requests.get(f"{hosts.url}/api/v1/artifacts/{artifact}/download/", stream=True, timeout=600,
                      headers=headers) as response:
        response.raise_for_status()
        for block in response.iter_content(BLOCK):
            first = first or time.monotonic() - started
            total += len(block)
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    return {"first_byte_s": first, "growth_mb": max(samples) - before, "bytes": total,
            "mb_per_s": total / 2**20 / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-journey", action="store_true")
    args = parser.parse_args()
    size = int(args.gb * 2**30) // (8 * BLOCK) * (8 * BLOCK)
    root = Path(tempfile.mkdtemp(prefix="vintner-bench-hosts-"))
    hosts = Hosts(root, root / "logs")
    result = {}
    try:
        hosts.ready()
        if not args.skip_journey:
            try:
                journey(hosts, root / "journey")
                result["journey_ok"] = True
            except Exception:
                traceback.print_exc()
                result["journey_ok"] = False
            hosts.manage("sweep_storage", "--grace", "0")
            mismatches = storage_mismatches(hosts)
            print("storage mismatches:", mismatches)
            shared = shared_paths(hosts)
            print("rows naming a host's local path:", shared)
            result.update(orphans=len(mismatches), shared_paths=len(shared))

        admin = root / "admin"  # the files the admin host's commands read and write: its own disk (own_disk)
        admin.mkdir(exist_ok=True)
        path = admin / "big.bin"
        big_file(path, size)
        ours, reference = [], []
        for _ in range(args.rounds):  # alternating, medians compared
            ours.append(size / 2**20 / shell(hosts, UPLOAD.format(path=str(path), key="bench/big.bin"))["seconds"])
            reference.append(size / 2**20 / shell(hosts, REFERENCE_UPLOAD.format(path=str(path), key="bench/ref.bin"))["seconds"])
        print(f"upload MB/s: vintner {ours}, boto3 upload_file {reference}")
        scratch = admin / "scratch"
        scratch.mkdir()
        staged = shell(hosts, STAGE.format(key="bench/big.bin", scratch=str(scratch)))
        assert (scratch / "big.bin").stat().st_size == size
        shutil.rmtree(scratch)
        # An IR (a small .xml, the 2 GB .bin): the web host streams it as a zip made as it is sent.
        # A single-file artifact would go to the client as a presigned link instead.
        xml = admin / "model.xml"
        xml.write_text("<net/>")
        made = shell(hosts, ARTIFACT.format(project=hosts.project, size=size, xml_size=xml.stat().st_size))
        shell(hosts, UPLOAD.format(path=str(xml), key=f"artifacts/{made['artifact']}/model.xml"))
        shell(hosts, UPLOAD.format(path=str(path), key=f"artifacts/{made['artifact']}/model.bin"))
        path.unlink()
        fetched = download(hosts, made["artifact"], made["token"])
        assert fetched["bytes"] > size
        print(f"download: {fetched}")
        result.update(
            web_rss_growth_mb=round(fetched["growth_mb"], 1), first_byte_s=round(fetched["first_byte_s"], 3),
            download_mb_per_s=round(fetched["mb_per_s"], 1), worker_rss_growth_mb=round(staged["growth_mb"], 1),
            s3_upload_mb_per_s=round(statistics.median(ours), 1),
            reference_upload_mb_per_s=round(statistics.median(reference), 1), gb=args.gb,
        )
    finally:
        hosts.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
