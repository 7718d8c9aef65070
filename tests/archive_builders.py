"""Archives built in tests, hostile ones included: no fixtures on disk, every byte made here."""

import io
import tarfile
import zipfile
from pathlib import Path

from PIL import Image


def make_zip(path: Path, entries, *, method=zipfile.ZIP_DEFLATED) -> Path:
    """entries: (name or ZipInfo, bytes) pairs."""
    path.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def tar_entry(name: str, data: bytes = b"", **fields) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def make_tar(path: Path, entries, *, mode="w", **options) -> Path:
    """entries: (name, bytes) pairs, or (TarInfo, bytes) from tar_entry."""
    path.parent.mkdir(exist_ok=True)
    with tarfile.open(path, mode, **options) as tar:
        for name, data in entries:
            info, data = tar_entry(name, data) if isinstance(name, str) else (name, data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def patch(path: Path, signature: bytes, offset: int, value: bytes) -> None:
    """Overwrite `value` at `offset` into every record that starts with `signature`."""
    data = bytearray(path.read_bytes())
    at = data.find(signature)
    while at >= 0:
        data[at + offset:at + offset + len(value)] = value
        at = data.find(signature, at + 1)
    path.write_bytes(bytes(data))


def image_bytes(fmt: str, color: tuple[int, int, int], size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def class_entries(per_class: int = 6) -> list[tuple[str, bytes]]:
    entries = []
    for shade, label in enumerate(["cat", "dog"]):
        for index in range(per_class):
            fmt = ["PNG", "JPEG"][index % 2]
            entries.append((f"pets/{label}/{index}.{fmt.lower()}", image_bytes(fmt, (100 * shade, index * 20, 50))))
    entries.append(("pets/cat/broken.png", b"\x89PNG\r\n\x1a\n not really"))
    return entries


def loose_photos(count: int = 24, size: int = 32, folder: str = "photos") -> list[tuple[str, bytes]]:
    """A flat folder of generated pictures of no class: what a team has of its own to calibrate on."""
    import random

    rng = random.Random(1)
    return [(f"{folder}/IMG_{index:04d}.{'jpg' if index % 2 else 'png'}",
             image_bytes("JPEG" if index % 2 else "PNG", tuple(rng.randrange(256) for _ in range(3)), (size, size + 8)))
            for index in range(count)]


def colour_classes(per_class: int = 24, size: int = 16) -> list[tuple[str, bytes]]:
    """Three classes a tiny network learns in a few epochs: mostly red, green or blue, with noise."""
    import random

    rng = random.Random(0)
    entries = []
    for channel, label in enumerate(["red", "green", "blue"]):
        for index in range(per_class):
            image = Image.new("RGB", (size, size))
            image.putdata([tuple(200 if c == channel else rng.randrange(0, 90) for c in range(3)) for _ in range(size * size)])
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            entries.append((f"{label}/{index}.png", buffer.getvalue()))
    return entries
