"""Upload verbs behind the tus endpoint: create, append a chunk, finish, delete, expire.

A chunk is appended under an exclusive lock on the part file, at the offset the database
holds; bytes past it (a crash between write and commit) are cut off first. The SHA-256 of
the whole file is computed as chunks arrive and kept per process, so finishing costs nothing;
a process that did not see the earlier chunks (a restart) hashes the part file once to catch up.
"""

import fcntl
import hashlib
import queue
import threading
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from webapp.core import files
from webapp.core.exceptions import Conflict
from webapp.core.quota import QuotaExceeded, gib, quota_reserved
from webapp.teams.models import Team
from webapp.uploads.models import Upload

COPY_CHUNK = 2**20


class UploadError(Exception):
    """Refused, with the HTTP status the tus endpoint answers and a sentence for the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def part_path(upload: Upload) -> Path:
    return settings.UPLOAD_DIR / f"{upload.id}.part"


def _expiry():
    return timezone.now() + timedelta(hours=settings.UPLOAD_EXPIRY_HOURS)


def upload_create(*, team: Team, user, filename: str, length: int, metadata: dict) -> Upload:
    if length > settings.UPLOAD_MAX_BYTES:
        raise UploadError(f"“{filename}” is {gib(length)}; the largest upload allowed is {gib(settings.UPLOAD_MAX_BYTES)}.", 413)
    uploads_expire()
    try:
        with quota_reserved(team.id, length):  # the row reserves its declared length
            upload = Upload.objects.create(
                team=team, created_by=user, filename=filename[:255], length=length, metadata=metadata,
                expires_at=_expiry(),
            )
    except QuotaExceeded as exc:
        raise UploadError(str(exc), 413) from None
    settings.UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    part_path(upload).touch()
    return upload


class _Hashers:
    """SHA-256 state of uploads in flight in this process, keyed by id, with the offset it covers."""

    def __init__(self, size: int = 64) -> None:
        self.size, self.lock, self.items = size, threading.Lock(), OrderedDict()

    def take(self, upload: Upload, part: BinaryIO):
        with self.lock:
            offset, hasher = self.items.pop(upload.id, (None, None))
        if offset == upload.offset:
            return hasher
        hasher = hashlib.sha256()
        part.seek(0)
        remaining = upload.offset
        while remaining:
            block = part.read(min(COPY_CHUNK * 8, remaining))
            hasher.update(block)
            remaining -= len(block)
        return hasher

    def keep(self, upload_id, offset: int, hasher) -> None:
        with self.lock:
            self.items[upload_id] = (offset, hasher)
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def drop(self, upload_id) -> None:
        with self.lock:
            self.items.pop(upload_id, None)


_hashers = _Hashers()


def _write_hashing(body: BinaryIO, length: int, part: BinaryIO, hasher) -> int:
    """Copy up to `length` bytes of `body` to `part` while a second thread hashes them, a batch of
    blocks behind. Writing and hashing both release the GIL, so on two cores the hash (as costly as
    the write) is hidden behind it."""
    batches: queue.SimpleQueue = queue.SimpleQueue()
    hashing = threading.Thread(target=_hash_batches, args=(batches, hasher), name="upload-hash")
    hashing.start()
    written, batch, batched = 0, [], 0
    try:
        while written < length:
            block = body.read(min(COPY_CHUNK, length - written))
            if not block:
                break
            part.write(block)
            batch.append(block)
            written += len(block)
            batched += len(block)
            if batched >= COPY_CHUNK:
                batches.put(batch)
                batch, batched = [], 0
        part.flush()
    finally:
        batches.put(batch)
        batches.put(None)  # the hash is whole once the thread ends
        hashing.join()
    return written


def _hash_batches(batches: queue.SimpleQueue, hasher) -> None:
    while (batch := batches.get()) is not None:
        for block in batch:
            hasher.update(block)


def upload_append(*, upload: Upload, offset: int, body: BinaryIO, length: int) -> Upload:
    """Append `length` bytes from `body` at `offset`; finish the upload when the last byte is in."""
    if length > settings.UPLOAD_CHUNK_MAX_BYTES:
        raise UploadError(f"A chunk may be at most {gib(settings.UPLOAD_CHUNK_MAX_BYTES)}; send the file in smaller chunks.", 413)
    if upload.complete:  # its part file is gone, published as the finished file
        raise UploadError("This upload is already complete.", 409)
    try:
        part = open(part_path(upload), "r+b")
    except FileNotFoundError:  # finished or deleted by another request since the row was read
        raise UploadError("This upload is already complete or was deleted.", 409) from None
    with part:
        try:
            fcntl.flock(part, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadError("Another request is writing to this upload right now.", 423) from None
        upload.refresh_from_db()
        if upload.complete:
            raise UploadError("This upload is already complete.", 409)
        if offset != upload.offset:
            raise UploadError(f"Upload-Offset {offset} does not match the {upload.offset} bytes received so far.", 409)
        if upload.offset + length > upload.length:
            raise UploadError(f"The chunk goes past the declared length of {upload.length} bytes.", 400)
        hasher = _hashers.take(upload, part)
        part.truncate(upload.offset)
        part.seek(upload.offset)
        written = _write_hashing(body, length, part, hasher)
        upload.offset += written
        Upload.objects.filter(id=upload.id).update(offset=upload.offset, expires_at=_expiry())
    if upload.offset < upload.length:
        _hashers.keep(upload.id, upload.offset, hasher)
        return upload
    _hashers.drop(upload.id)
    return _finish(upload, hasher.hexdigest())


def _finish(upload: Upload, sha256: str) -> Upload:
    expected = str(upload.metadata.get("sha256", "")).lower()
    if expected and expected != sha256:
        upload_delete(upload=upload)
        raise UploadError(
            f"“{upload.filename}” arrived damaged: its SHA-256 is {sha256}, not the {expected} your client computed. "
            "Upload it again.",
            460,  # tus: checksum mismatch
        )
    files.publish_file(part_path(upload), upload.storage_key)
    Upload.objects.filter(id=upload.id).update(sha256=sha256, completed_at=timezone.now())
    upload.refresh_from_db()
    return upload


def upload_check(*, upload: Upload, team_id: int, user, sha256: str = "", field: str = "upload") -> None:
    """A finished upload of this user in this team that nothing uses yet, and, when the client sent
    its checksum, the same bytes: else a ValidationError on `field` (or "sha256")."""
    if upload.team_id != team_id or upload.created_by_id != user.id:
        raise ValidationError({field: "No such upload."})
    if not upload.complete:
        raise ValidationError({field: f"“{upload.filename}” has not finished uploading ({upload.offset} of {upload.length} bytes)."})
    if upload.claimed:
        raise Conflict({field: f"“{upload.filename}” is already used by a dataset or model."})
    if sha256 and sha256.lower() != upload.sha256:
        raise ValidationError({"sha256": f"“{upload.filename}” arrived damaged: the server got SHA-256 {upload.sha256}, "
                                         f"your browser computed {sha256.lower()}. Upload it again."})


def upload_claim(*, upload: Upload, field: str = "upload") -> None:
    """A dataset or model now owns the file; it stops expiring. One conditional update, so of
    requests claiming the same upload at once exactly one wins; the others get a Conflict (409)
    and roll back what they made. Call it inside the transaction that makes the owner."""
    if not Upload.objects.filter(id=upload.id, claimed=False).update(claimed=True):
        raise Conflict({field: f"“{upload.filename}” is already used by a dataset or model."})


def upload_delete(*, upload: Upload) -> None:
    _hashers.drop(upload.id)
    part_path(upload).unlink(missing_ok=True)
    if upload.complete:
        files.delete_file(upload.storage_key)
    upload.delete()


def uploads_expire() -> int:
    """Delete uploads that stalled or that nothing claimed before they expired."""
    stale = list(Upload.objects.filter(expires_at__lt=timezone.now(), claimed=False))
    for upload in stale:
        upload_delete(upload=upload)
    return len(stale)
