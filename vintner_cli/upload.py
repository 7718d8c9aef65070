"""Resumable uploads to /api/v1/uploads/ (tus 1.0) with tuspy, the tus project's client.

The upload's URL is kept in ~/.cache/vintner/uploads.json (tuspy's FileStorage), keyed by the
server, the project, the file's path, size and modification time and tuspy's fingerprint of its
first bytes: running the same command again after an interruption asks the server where the
upload stands (HEAD) and sends only the rest. The entry is dropped once the upload is used.
A new upload carries the file's SHA-256, which the server checks when the last byte arrives.
"""

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.fingerprint.fingerprint import Fingerprint
from tusclient.storage.filestorage import FileStorage
from tusclient.uploader import Uploader

from vintner_cli.client import ApiError, Client, error_text
from vintner_cli.config import cache_dir
from vintner_cli.progress import Transfer, human_bytes, note

DEFAULT_CHUNK = 32 * 2**20  # what the browser sends; the server takes up to UPLOAD_CHUNK_MAX_MB
RETRIES = 6  # consecutive failed chunks (connection lost, 5xx) before giving up
GONE = (404, 410, 460)
HASH_BAR_FROM = 256 * 2**20  # the server no longer has the upload (expired, deleted, checksum refused)


class _Place(Fingerprint):
    """tuspy's fingerprint (size + MD5 of the first 64 KiB), plus where the file is and goes."""

    def __init__(self, server: str, project: int, path: Path) -> None:
        stat = path.stat()
        self.prefix = f"{server}|project {project}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"

    def get_fingerprint(self, fs) -> str:
        return f"{self.prefix}|{super().get_fingerprint(fs)}"


@dataclass(frozen=True)
class Finished:
    """A complete upload; `forget()` once a dataset or model owns it."""

    id: str
    url: str
    storage: FileStorage
    key: str

    def forget(self) -> None:
        self.storage.remove_item(self.key)
        self.storage.close()


def _storage() -> FileStorage:
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / "uploads.json"
    if not path.exists():
        path.touch(mode=0o600)
    return FileStorage(str(path))


def _detail(error: TusCommunicationError) -> str:
    content = error.response_content
    try:
        return error_text(json.loads(content)) if content else str(error)
    except ValueError:
        return content.decode(errors="replace")[:300] if isinstance(content, bytes) else str(error)


def _sha256(path: Path) -> str:
    """Read once before a new upload; a bar only for files big enough to make anyone wait."""
    hasher = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as source:
        if size < HASH_BAR_FROM:
            while block := source.read(4 * 2**20):
                hasher.update(block)
            return hasher.hexdigest()
        with Transfer(f"checksum {path.name}", size) as bar:
            while block := source.read(4 * 2**20):
                hasher.update(block)
                bar.update(bar.done + len(block))
    return hasher.hexdigest()


def upload_file(client: Client, *, project: int, path: Path, chunk_size: int = DEFAULT_CHUNK) -> Finished:
    """Send the file (or what the server lacks of it) and return the finished upload."""
    if not path.is_file():
        raise ApiError(f"{path} is not a file.")
    size = path.stat().st_size
    storage = _storage()
    place = _Place(client.url, project, path)
    tus = TusClient(client.api_url("uploads/"), headers=client.auth_headers)
    metadata = {"filename": path.name, "project": str(project)}
    with open(path, "rb") as stream:
        key = place.get_fingerprint(stream)

    def uploader() -> Uploader:
        return tus.uploader(file_path=str(path), chunk_size=chunk_size, metadata=metadata, store_url=True,
                            url_storage=storage, fingerprinter=place)

    try:
        upload = uploader()  # with a stored URL, this asks the server for the offset (HEAD)
    except TusCommunicationError as error:
        if error.status_code is None:
            raise ApiError(f"Cannot reach the server at {client.url}: {error}") from None
        if error.status_code not in (*GONE, 403):  # 403: another user's upload (logged in as someone else)
            raise ApiError(f"The server refused the upload of {path.name}: {_detail(error)}", error.status_code) from None
        storage.remove_item(key)
        note(f"The earlier upload of {path.name} is gone from the server; starting again.")
        upload = uploader()

    if upload.url:
        note(f"Resuming upload {upload_id(upload.url)} of {path.name}: "
             f"{human_bytes(upload.offset)} of {human_bytes(size)} already on the server.")
    else:
        metadata["sha256"] = _sha256(path)
        try:
            upload.set_url(upload.create_url())  # stored at once: an interruption from here on resumes
        except TusCommunicationError as error:
            raise ApiError(f"The server refused the upload of {path.name}: {_detail(error)} (HTTP {error.status_code})",
                           error.status_code) from None
        upload.offset = 0

    try:
        _send(upload, size, path, forget=lambda: storage.remove_item(key))
    except KeyboardInterrupt:
        note(f"Upload of {path.name} stopped at {human_bytes(upload.offset)} of {human_bytes(size)}; "
             "run the same command again to resume.")
        raise
    return Finished(id=upload_id(upload.url), url=upload.url, storage=storage, key=key)


def _send(upload: Uploader, size: int, path: Path, *, forget) -> None:
    """Chunks until the server has every byte; a dropped connection or a 5xx is retried from the
    server's offset (HEAD), a 4xx is the server's final word."""
    failures = 0
    with Transfer(f"upload {path.name}", size, done=upload.offset) as bar:
        while upload.offset < size:
            try:
                upload.upload_chunk()
            except TusCommunicationError as error:
                status = error.status_code
                if status in GONE:
                    forget()
                if status is not None and 400 <= status < 500 and status != 409:  # 409: offsets differ: ask again
                    raise ApiError(f"Uploading {path.name} failed: {_detail(error)} (HTTP {status})", status) from None
                failures += 1
                if failures > RETRIES:
                    raise ApiError(f"Uploading {path.name} failed {failures} times in a row ({_detail(error)}). "
                                   "Run the same command again to resume.") from None
                bar_note = f"chunk failed ({_detail(error)}); retrying"
                if bar.bar:
                    bar.bar.console.print(bar_note, markup=False)
                else:
                    note(bar_note)
                time.sleep(min(2**failures, 30))
                try:
                    upload.offset = upload.get_offset()
                except TusCommunicationError:
                    continue  # still unreachable: counts on the next round
            else:
                failures = 0
            bar.update(upload.offset)


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def parse_size(text: str) -> int:
    """`32M`, `256K`, `1048576` → bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "")
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise ValueError(f"“{text}” is not a size: write e.g. 32M or 256K.") from None
    if value < 1024:
        raise ValueError("Chunks are at least 1K.")
    return value

