"""Resumable upload throughput: a generated archive through Vintner's tus endpoint on loopback.

    .venv/bin/python bench/upload.py [--gb 2] [--chunk-mb 32]

Everything it needs is started here and stopped at the end: a private data folder with a fresh
SQLite database, its own redis-server, daphne serving webapp.asgi:application.

Vintner's path: a signed-in user (API token) uploads a generated tar archive (files of random
bytes) with tuspy, the tus project's Python client — POST to create, then one PATCH per chunk —
exactly as the CLI and scripts do; the server authorizes each chunk, appends it under a lock,
hashes it (SHA-256 of the whole file, kept as chunks arrive) and, at the end, publishes the file
to storage. mb_per_s = archive size / wall time of the whole upload. The server's RSS (daphne,
sampled every 0.1 s) is compared with its RSS before the upload: server_rss_growth_mb is the peak
growth. sha256_ok: the checksum the server recorded equals the local file's.

Every Vintner upload is dropped half way and resumed by a new client from the offset the server
reports (HEAD), as the browser and CLI do after a lost connection; its time counts both halves.

Reference, in the same run: the bare transport, the same chunks PATCHed with the same client
library to a minimal ASGI app on daphne that appends each body to a file
(bench/_reference_upload_asgi.py): no Django, auth, database or hashing. The two take turns for
--rounds rounds (default 3, order swapped every other round); the figures are the medians, and
ratio = mb_per_s / reference_mb_per_s (goal ≥ 0.8).
The last line of output is one JSON object.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import tarfile
import threading
import time
from pathlib import Path

from _harness import Stack, spread

MiB = 2**20


def make_archive(path: Path, size: int) -> str:
    """A tar of 16 MiB files of random bytes (incompressible, like JPEGs); returns its SHA-256."""
    block = os.urandom(16 * MiB)
    hasher = hashlib.sha256()

    class Hashing:
        def __init__(self, raw) -> None:
            self.raw = raw

        def write(self, data) -> int:
            hasher.update(data)
            return self.raw.write(data)

    with open(path, "wb") as raw, tarfile.open(fileobj=Hashing(raw), mode="w|") as tar:
        for index in range(max(1, size // len(block))):
            info = tarfile.TarInfo(f"data/class_{index % 4}/{index:05d}.bin")
            info.size = len(block)
            tar.addfile(info, _Reader(index.to_bytes(8, "big") + block[8:]))
    return hasher.hexdigest()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk, self.pos = self.data[self.pos : end], min(end, len(self.data))
        return chunk


def rss_mb(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / MiB


class PeakRss:
    """Samples a process's RSS every 0.1 s while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> "PeakRss":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


def make_user() -> tuple[str, int]:
    """A user owning a team with a project; returns an API token and the project id."""
    from django.contrib.auth import get_user_model
    from webapp.core.tokens import token_issue

    from webapp.projects.models import Project
    from webapp.teams.models import Membership, Role, Team

    user = get_user_model().objects.create_user("bench", password="bench-password")
    team = Team.objects.create(name="Bench", storage_quota_gb=1000)
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="Upload bench", created_by=user)
    return token_issue(user=user)[1], project.id


def tus_upload(endpoint: str, path: Path, chunk: int, headers: dict, metadata: dict,
               *, resume_at: int | None = None) -> tuple[float, str]:
    """The whole upload's wall time and its URL. With resume_at, the upload stops there and a new
    client picks it up from the offset the server reports (HEAD), as after a dropped connection."""
    from tusclient import client

    tus = client.TusClient(endpoint, headers=headers)
    started = time.perf_counter()
    uploader = tus.uploader(file_path=str(path), chunk_size=chunk, metadata=metadata)
    if resume_at is not None:
        uploader.upload(stop_at=resume_at)
        uploader = tus.uploader(file_path=str(path), chunk_size=chunk, url=uploader.url)
    uploader.upload()
    return time.perf_counter() - started, uploader.url


def reference_upload(url: str, path: Path, chunk: int) -> float:
    """The same PATCHes, with the same library (requests, one connection per chunk, as tuspy)."""
    import requests

    started = time.perf_counter()
    with open(path, "rb") as source:
        offset = 0
        while block := source.read(chunk):
            response = requests.patch(
                url, data=block,
                headers={"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
            )
            response.raise_for_status()
            offset += len(block)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=2.0, help="archive size in GiB (default 2)")
    parser.add_argument("--chunk-mb", type=int, default=32, help="tus chunk size in MiB (default 32, as the browser)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each path (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (logs, database)")
    args = parser.parse_args()
    chunk = args.chunk_mb * MiB

    with Stack(keep=args.keep) as stack:
        archive = stack.data_dir / "bench-archive.tar"
        started = time.perf_counter()
        local_sha256 = make_archive(archive, int(args.gb * 2**30))
        size = archive.stat().st_size
        print(f"generated {size / MiB:.0f} MiB archive in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        token, project_id = make_user()
        reference_file = stack.data_dir / "reference.bin"
        os.environ["REFERENCE_UPLOAD_FILE"] = stack.env["REFERENCE_UPLOAD_FILE"] = str(reference_file)
        server, port = stack.start_daphne()
        bare, bare_port = stack.start_daphne("bench._reference_upload_asgi:application")
        headers = {"Authorization": f"Token {token}"}
        endpoint = f"http://127.0.0.1:{port}/api/v1/uploads/"
        # Warm up: the first request imports the API code; measure from a server that has served.
        warm = stack.data_dir / "warm.bin"
        warm.write_bytes(os.urandom(MiB))
        tus_upload(endpoint, warm, chunk, headers, {"filename": "warm.bin", "project": str(project_id)})

        import requests

        def vintner_round(index: int) -> dict:
            rss_before = rss_mb(server.pid)
            with PeakRss(server.pid) as rss:
                seconds, url = tus_upload(
                    endpoint, archive, chunk, headers,
                    {"filename": f"round-{index}.tar", "project": str(project_id), "sha256": local_sha256},
                    resume_at=(size // chunk // 2) * chunk or None,  # dropped half way, then resumed
                )
            state = requests.get(url, headers=headers).json()
            requests.delete(url, headers={**headers, "Tus-Resumable": "1.0.0"})  # the disk is not the figure
            return {"mb_per_s": size / MiB / seconds, "growth": rss.peak - rss_before,
                    "sha256_ok": state.get("sha256") == local_sha256 and state.get("offset") == size}

        def reference_round() -> float:
            mb_per_s = size / MiB / reference_upload(f"http://127.0.0.1:{bare_port}/", archive, chunk)
            reference_file.unlink()  # at the end of its round, like the Vintner upload's DELETE: each
            return mb_per_s          # round starts with the memory the last one freed, whichever it was

        # Alternating rounds, the order swapped every other one; the figures are their medians.
        vintner, reference = [], []
        for index in range(args.rounds):
            for path in ("vintner", "reference") if index % 2 == 0 else ("reference", "vintner"):
                if path == "vintner":
                    vintner.append(vintner_round(index))
                    print(f"round {index + 1} vintner:   {vintner[-1]['mb_per_s']:7.1f} MiB/s (resumed half way), "
                          f"daphne RSS +{vintner[-1]['growth']:.0f} MiB", file=sys.stderr)
                else:
                    reference.append(reference_round())
                    print(f"round {index + 1} reference: {reference[-1]:7.1f} MiB/s", file=sys.stderr)
        stack.stop_service(server)
        stack.stop_service(bare)

    mb_per_s = statistics.median(r["mb_per_s"] for r in vintner)
    reference_mb_per_s = statistics.median(reference)
    print(json.dumps({
        "gb": round(size / 2**30, 2),
        "chunk_mb": args.chunk_mb,
        "mb_per_s": round(mb_per_s, 1),
        "server_rss_growth_mb": round(max(r["growth"] for r in vintner), 1),
        "sha256_ok": all(r["sha256_ok"] for r in vintner),
        "reference_mb_per_s": round(reference_mb_per_s, 1),
        "ratio": round(mb_per_s / reference_mb_per_s, 3),
        "resumed": True,
        "rounds": args.rounds,
        "spread": {"vintner": spread([r["mb_per_s"] for r in vintner]), "reference": spread(reference)},
    }))


if __name__ == "__main__":
    main()
