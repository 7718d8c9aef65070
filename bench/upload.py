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

Reference, in the same run: the bare transport, the same chunks PATCHed with the same client
library to a minimal ASGI app on daphne that appends each body to a file
(bench/_reference_upload_asgi.py): no Django, auth, database or hashing.
The last line of output is one JSON object.
"""

import argparse
import hashlib
import json
import os
import sys
import tarfile
import threading
import time
from pathlib import Path

from _harness import Stack

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


def tus_upload(endpoint: str, path: Path, chunk: int, headers: dict, metadata: dict) -> tuple[float, str]:
    from tusclient import client

    uploader = client.TusClient(endpoint, headers=headers).uploader(
        file_path=str(path), chunk_size=chunk, metadata=metadata
    )
    started = time.perf_counter()
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
        server, port = stack.start_daphne()
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Token {token}"}
        endpoint = f"{base}/api/v1/uploads/"
        # Warm up: the first request imports the API code; measure from a server that has served.
        warm = stack.data_dir / "warm.bin"
        warm.write_bytes(os.urandom(MiB))
        tus_upload(endpoint, warm, chunk, headers, {"filename": "warm.bin", "project": str(project_id)})
        rss_before = rss_mb(server.pid)

        with PeakRss(server.pid) as rss:
            seconds, url = tus_upload(
                endpoint, archive, chunk, headers,
                {"filename": archive.name, "project": str(project_id), "sha256": local_sha256},
            )
        import requests

        state = requests.get(url, headers=headers).json()
        sha256_ok = state.get("sha256") == local_sha256 and state.get("offset") == size
        mb_per_s = size / MiB / seconds
        growth = rss.peak - rss_before
        print(f"vintner:   {mb_per_s:7.1f} MiB/s  ({seconds:.1f} s), daphne RSS {rss_before:.0f} → peak {rss.peak:.0f} MiB",
              file=sys.stderr)
        stack.stop_service(server)

        os.environ["REFERENCE_UPLOAD_FILE"] = str(stack.data_dir / "reference.bin")
        stack.env["REFERENCE_UPLOAD_FILE"] = os.environ["REFERENCE_UPLOAD_FILE"]
        reference, ref_port = stack.start_daphne("bench._reference_upload_asgi:application")
        ref_seconds = reference_upload(f"http://127.0.0.1:{ref_port}/", archive, chunk)
        reference_mb_per_s = size / MiB / ref_seconds
        print(f"reference: {reference_mb_per_s:7.1f} MiB/s  ({ref_seconds:.1f} s)", file=sys.stderr)

    print(json.dumps({
        "gb": round(size / 2**30, 2),
        "chunk_mb": args.chunk_mb,
        "mb_per_s": round(mb_per_s, 1),
        "server_rss_growth_mb": round(growth, 1),
        "sha256_ok": sha256_ok,
        "reference_mb_per_s": round(reference_mb_per_s, 1),
    }))


if __name__ == "__main__":
    main()
