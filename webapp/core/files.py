"""Files through Django's storage API: local disk on one box, S3/MinIO when hosts are many.

Outputs are built in a local folder and published in one step, so a reader never sees half a
dataset. With local storage publishing is a rename (no copy); with S3 it is an upload.
"""

import os
import shutil
from pathlib import Path

from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage


def is_local() -> bool:
    return isinstance(default_storage, FileSystemStorage)


def _local_target(key: str) -> Path:
    target = Path(default_storage.path(key))
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def publish_file(source: Path, key: str) -> None:
    """Move a finished local file to `key`; the source is gone afterwards."""
    if is_local():
        shutil.move(source, _local_target(key))  # a rename on the same disk
        return
    with open(source, "rb") as handle:
        default_storage.save(key, File(handle))
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
    delete_file(key)
    with open(source, "rb") as handle:
        default_storage.save(key, File(handle))


def publish_tree(source: Path, prefix: str) -> None:
    """Move a finished local folder to `prefix/`; on S3 a failure removes what was sent."""
    if is_local():
        target = _local_target(prefix)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(source, target)
        return
    try:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            with open(path, "rb") as handle:
                default_storage.save(f"{prefix}/{path.relative_to(source).as_posix()}", File(handle))
    except BaseException:
        delete_tree(prefix)
        raise
    shutil.rmtree(source)


def local_file(key: str, scratch: Path) -> Path:
    """A local path to read `key` from: the file itself on local storage, else a download."""
    if is_local():
        return Path(default_storage.path(key))
    target = scratch / Path(key).name
    with default_storage.open(key, "rb") as remote, open(target, "wb") as local:
        shutil.copyfileobj(remote, local, 2**20)
    return target


def local_tree(prefix: str, scratch: Path) -> Path:
    """A local folder to read `prefix/` from (never to write into): the folder itself on local
    storage, else a download into `scratch`."""
    if is_local():
        return Path(default_storage.path(prefix))
    target = scratch / Path(prefix).name

    def fetch(folder: str, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        folders, names = default_storage.listdir(folder)
        for name in names:
            with default_storage.open(f"{folder}/{name}", "rb") as remote, open(into / name, "wb") as local:
                shutil.copyfileobj(remote, local, 2**20)
        for name in folders:
            fetch(f"{folder}/{name}", into / name)

    fetch(prefix, target)
    return target


def folders(prefix: str) -> list[str]:
    """The names of the folders directly under `prefix` (none if it does not exist)."""
    try:
        return default_storage.listdir(prefix)[0]
    except FileNotFoundError:
        return []


def delete_file(key: str) -> None:
    if default_storage.exists(key):
        default_storage.delete(key)


def delete_tree(prefix: str) -> None:
    if is_local():
        shutil.rmtree(default_storage.path(prefix), ignore_errors=True)
        return
    folders, files = default_storage.listdir(prefix)
    for name in files:
        default_storage.delete(f"{prefix}/{name}")
    for name in folders:
        delete_tree(f"{prefix}/{name}")
