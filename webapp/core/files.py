"""Files through Django's storage API: local disk on one box, S3/MinIO when hosts are many.

Outputs are built in a local folder and published in one step, so a reader never sees half a
dataset. With local storage publishing is a rename (no copy); with S3 it is an upload.

Nothing is held whole in memory. On S3 every transfer goes through boto3's managed transfer
(multipart uploads, ranged downloads straight to disk), and readers get the object's body as a
stream: django-storages' own S3File reads a whole object into memory before its first byte.
Keys are written as given and overwrite what was there, so a retried attempt replaces what a
killed one left instead of adding copies under new names.
"""

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
from asgiref.sync import sync_to_async
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.handlers.asgi import ASGIRequest
from django.utils.http import content_disposition_header

CHUNK = 8 * 2**20
# Parts of 8 MiB, 4 at once, and at most 16 blocks of 1 MiB waiting to be written to disk: a
# transfer of any size holds under 64 MiB (boto3's defaults allow 10 parts and 100 blocks).
TRANSFER = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=4,
                          io_chunksize=2**20, max_io_queue=16)


def is_local() -> bool:
    return isinstance(default_storage, FileSystemStorage)


def _local_target(key: str) -> Path:
    target = Path(default_storage.path(key))
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _object(key: str):
    return default_storage.bucket.Object(default_storage._normalize_name(key))


def _upload(source: Path, key: str) -> None:
    """A multipart upload that replaces the object at `key`; readers see the old or the new one."""
    _object(key).upload_file(str(source), Config=TRANSFER)


def _download(key: str, target: Path) -> None:
    """Ranged GETs written to `target` as they arrive (boto3 writes a temp name, then renames)."""
    _object(key).download_file(str(target), Config=TRANSFER)


def publish_file(source: Path, key: str) -> None:
    """Move a finished local file to `key`; the source is gone afterwards."""
    if is_local():
        shutil.move(source, _local_target(key))  # a rename on the same disk
        return
    _upload(source, key)
    source.unlink()


def store_copy(source: Path, key: str) -> None:
    """Copy a local file to `key`, replacing what was there (a checkpoint, saved again each epoch);
    readers see the old file or the new one, never half of one."""
    if is_local():
        target = _local_target(key)
        draft = target.with_name(f".{target.name}.part")
        shutil.copyfile(source, draft)
        os.replace(draft, target)
        return
    _upload(source, key)


def publish_tree(source: Path, prefix: str) -> None:
    """Move a finished local folder to `prefix/`, replacing whatever an earlier attempt left there;
    on S3 a failure removes what was sent."""
    if is_local():
        target = _local_target(prefix)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(source, target)
        return
    delete_tree(prefix)  # a killed attempt's files, so the prefix holds this attempt's only
    try:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            _upload(path, f"{prefix}/{path.relative_to(source).as_posix()}")
    except BaseException:
        delete_tree(prefix)
        raise
    shutil.rmtree(source)


def local_file(key: str, scratch: Path) -> Path:
    """A local path to read `key` from: the file itself on local storage, else a download."""
    if is_local():
        return Path(default_storage.path(key))
    target = scratch / Path(key).name
    _download(key, target)
    return target


def local_tree(prefix: str, scratch: Path) -> Path:
    """A local folder to read `prefix/` from (never to write into): the folder itself on local
    storage, else a download into `scratch`."""
    if is_local():
        return Path(default_storage.path(prefix))
    target = scratch / Path(prefix).name
    for key in keys(prefix):
        path = target / key[len(prefix) + 1:]
        path.parent.mkdir(parents=True, exist_ok=True)
        _download(key, path)
    return target


def folders(prefix: str) -> list[str]:
    """The names of the folders directly under `prefix` (none if it does not exist)."""
    try:
        return default_storage.listdir(prefix)[0]
    except FileNotFoundError:
        return []


def open_stream(key: str):
    """A file object that reads `key` from its first byte on, a block at a time (for a response)."""
    if is_local():
        return open(default_storage.path(key), "rb")
    return _object(key).get()["Body"]


def read_blocks(key: str, size: int = 2**20) -> Iterator[bytes]:
    with open_stream(key) as stream:
        while block := stream.read(size):
            yield block


def download_url(key: str, filename: str) -> str | None:
    """On S3, a short-lived link that fetches `key` straight from the bucket, saved as `filename`:
    signed for S3_PUBLIC_ENDPOINT_URL, the bucket's address as browsers reach it. None on local
    storage (the web host sends the file)."""
    if is_local():
        return None
    client = boto3.client(
        "s3", endpoint_url=settings.S3_PUBLIC_ENDPOINT_URL or default_storage.endpoint_url,
        aws_access_key_id=default_storage.access_key, aws_secret_access_key=default_storage.secret_key,
        region_name=default_storage.region_name, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    return client.generate_presigned_url("get_object", ExpiresIn=settings.DOWNLOAD_LINK_SECONDS, Params={
        "Bucket": default_storage.bucket_name, "Key": default_storage._normalize_name(key),
        "ResponseContentDisposition": content_disposition_header(True, filename)})


def for_server(request, blocks: Iterator[bytes]):
    """What a streaming response should iterate under the server that asked. Under ASGI (daphne)
    Django reads a plain iterator to its end, in memory, before it sends the first byte; an
    async iterator goes out block by block, each read in a worker thread."""
    if not isinstance(getattr(request, "_request", request), ASGIRequest):  # DRF wraps Django's
        return blocks

    async def pump() -> AsyncIterator[bytes]:
        try:
            while (block := await sync_to_async(next, thread_sensitive=False)(blocks, None)) is not None:
                yield block
        finally:
            await sync_to_async(blocks.close, thread_sensitive=False)()  # a client gone mid-way

    return pump()


def keys(prefix: str = "") -> Iterator[str]:
    """Every stored key under `prefix/` (everything when empty), at any depth."""
    return (key for key, _ in listing(prefix))


def listing(prefix: str = "") -> Iterator[tuple[str, datetime]]:
    """Every stored key under `prefix/` with the time it was last written."""
    if is_local():
        base = Path(default_storage.path("."))
        root = Path(default_storage.path(prefix)) if prefix else base
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                yield path.relative_to(base).as_posix(), datetime.fromtimestamp(path.stat().st_mtime, UTC)
        return
    for summary in default_storage.bucket.objects.filter(Prefix=f"{prefix}/" if prefix else ""):
        yield summary.key, summary.last_modified


def abort_unfinished_uploads(before: datetime) -> int:
    """Multipart uploads a killed process began before `before` and never finished: their parts
    take room in the bucket without being objects anyone can list."""
    if is_local():
        return 0
    aborted = 0
    for upload in default_storage.bucket.multipart_uploads.all():
        if upload.initiated < before:
            upload.abort()
            aborted += 1
    return aborted


def exists(key: str) -> bool:
    return default_storage.exists(key)  # a stat on local storage, a HEAD on S3


def delete_file(key: str) -> None:
    if is_local():
        Path(default_storage.path(key)).unlink(missing_ok=True)
        return
    _object(key).delete()  # deleting a missing key is not an error on S3


def delete_tree(prefix: str) -> None:
    if is_local():
        shutil.rmtree(default_storage.path(prefix), ignore_errors=True)
        return
    batch = []
    for key in keys(prefix):
        batch.append({"Key": key})
        if len(batch) == 1000:  # the most one DeleteObjects request takes
            default_storage.bucket.delete_objects(Delete={"Objects": batch, "Quiet": True})
            batch = []
    if batch:
        default_storage.bucket.delete_objects(Delete={"Objects": batch, "Quiet": True})
