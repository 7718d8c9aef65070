"""Unpacking uploaded dataset archives (zip, tar, tar.gz/.bz2/.xz), which are untrusted.

Everything streams in 1 MiB chunks and is counted as it is written: header sizes are never
trusted, so a lying header cannot get more than the limits onto disk. Anything that could
write outside `dest` (`..`, absolute paths, links, devices) is refused, naming the entry.
No Django, no Celery.
"""

import bz2
import errno
import gzip
import lzma
import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from workers.pipeline.reporting import JobError, Span, show

KiB, MiB, GiB = 2**10, 2**20, 2**30
CHUNK = MiB
RATIO_GRACE = 10 * MiB  # ratio checks start after this much: small files legitimately compress very well
TAR_SLACK = 8 * MiB  # the most a tar may hold between two entries' data (headers, padding)
CANCEL_EVERY = 8  # chunks between cancellation checks inside one entry
OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW

# zipfile decompresses bzip2 and LZMA entries without bounding the output of one read, so a
# small entry can fill memory before any limit is checked: only Stored and Deflate are accepted.
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
ZIP_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES"}

# magic bytes -> (format, how to decompress it as a stream)
COMPRESSED = {
    b"\x1f\x8b": ("tar.gz", "gzip", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    b"BZh": ("tar.bz2", "bzip2", lambda raw: bz2.BZ2File(raw)),
    b"\xfd7zXZ\x00": ("tar.xz", "xz", lambda raw: lzma.LZMAFile(raw)),
}
DECOMPRESS = {fmt: decompress for fmt, _, decompress in COMPRESSED.values()}

LOOKS_LIKE = {  # for saying what a refused upload is instead
    b"\x89PNG": "starts like a PNG image",
    b"\xff\xd8\xff": "starts like a JPEG image",
    b"GIF8": "starts like a GIF image",
    b"%PDF": "starts like a PDF document",
    b"7z\xbc\xaf\x27\x1c": "is a 7-Zip archive, which is not supported",
    b"Rar!": "is a RAR archive, which is not supported",
    b"\x28\xb5\x2f\xfd": "is Zstandard-compressed, which is not supported",
}

# Every way a damaged archive fails to read; only ever caught around reads, never writes.
DAMAGED = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError, struct.error)


@dataclass(frozen=True)
class ExtractLimits:
    max_bytes: int = 50 * 2**30  # total bytes actually written (not header sizes)
    max_files: int = 2_000_000
    max_file_bytes: int = 4 * 2**30  # any one entry, bytes actually written
    max_ratio: float = 200.0  # bytes written / compressed bytes, per zip entry and for the whole archive


class ArchiveRejected(JobError):
    """The archive is refused; the message names the entry and says why, in plain words."""


@dataclass
class Extracted:
    format: str  # "zip" | "tar" | "tar.gz" | "tar.bz2" | "tar.xz"
    files: int
    bytes: int


def archive_format(path: Path, name: str = "") -> str:
    """The archive's format, by its first bytes, never by its file name (`name`: as the user
    knows the file, for messages; the path's own name when empty)."""
    name = name or path.name
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip, or an empty one
        return "zip"
    for magic, (fmt, kind, decompress) in COMPRESSED.items():
        if head.startswith(magic):
            with open(path, "rb") as raw, _reading(None):
                block = decompress(raw).read(512)
            if _is_tar(block):
                return fmt
            raise ArchiveRejected(f"“{show(name)}” is a {kind}-compressed file but not a tar archive; "
                                  "upload a .zip, .tar or .tar.gz archive.")
    if _is_tar(head):
        return "tar"
    raise ArchiveRejected(f"“{show(name)}” is not a zip or tar archive (it {_looks_like(head)}); "
                          "upload a .zip, .tar or .tar.gz archive.")


def extract_archive(archive: Path, dest: Path, limits: ExtractLimits, span: Span, *, name: str = "") -> Extracted:
    """Unpack `archive` below `dest` (empty or new) within `limits`, or raise ArchiveRejected.

    On any error `dest` may hold partial output: the caller deletes it."""
    fmt = archive_format(archive, name)
    dest.mkdir(parents=True, exist_ok=True)
    out = _Output(dest.resolve(), limits, archive.stat().st_size, span)
    if fmt == "zip":
        _extract_zip(archive, out)
    else:
        _extract_tar(archive, fmt, out)
    span.progress(1.0)
    span.reporter.log(f"Unpacked {out.files:,} files ({_human(out.bytes)}) from a {fmt} archive.")
    return Extracted(format=fmt, files=out.files, bytes=out.bytes)


# --- zip ---------------------------------------------------------------------------------------

def _extract_zip(archive: Path, out: "_Output") -> None:
    with _reading(None):
        zf = zipfile.ZipFile(archive)
    with zf:
        # Everything the table of contents can tell is checked before anything is written.
        plan, declared = [], 0
        for info in zf.infolist():
            parts, is_dir = _check_zip_entry(info, out)
            declared += 0 if is_dir else info.file_size
            # header sizes may lie low (counting catches that), but a large one is refused either way
            out.check_size(info.filename, 0 if is_dir else info.file_size, declared)
            plan.append((info, parts, is_dir))
        for done, (info, parts, is_dir) in enumerate(plan):
            out.span.raise_if_cancelled()
            name = info.filename
            if is_dir:
                out.directory(name, parts)
                continue
            with _reading(name):
                stream = zf.open(info)
            with stream:
                # within an entry the bar uses its header size: a lie there only misdraws the bar
                out.write(name, parts, stream.read, packed=info.compress_size,
                          fraction=lambda written: (done + min(written / max(info.file_size, 1), 1.0)) / len(plan))
            out.progress((done + 1) / len(plan))


def _check_zip_entry(info: zipfile.ZipInfo, out: "_Output") -> tuple[tuple[str, ...], bool]:
    """The entry's path parts and whether it is a folder; refuses what must not be unpacked."""
    name, mode = info.filename, info.external_attr >> 16
    is_dir = info.is_dir() or stat.S_ISDIR(mode)
    parts = out.claim(name, is_dir=is_dir)
    if stat.S_ISLNK(mode):
        raise _refused(name, "it is a symbolic link; links are not allowed in uploads")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _refused(name, "it is a special file (a device, pipe or socket), not a regular file")
    if is_dir:
        return parts, True
    if info.flag_bits & 0x1:
        raise _refused(name, "it is encrypted; upload an archive without a password")
    if info.compress_type not in ZIP_METHODS:
        method = ZIP_METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise _refused(name, f"it is compressed with {method}, which is not supported; "
                             "re-create the archive with standard zip (Deflate) compression")
    return parts, False


# --- tar ---------------------------------------------------------------------------------------

class _Overrun(Exception):
    """tarfile read more than `_Meter.limit`."""


class _Meter:
    """The stream tarfile reads: counts it, and stops tarfile reading past `limit`, because
    tarfile reads a header (pax, GNU long name) wholly into memory, however large it claims to be."""

    def __init__(self, stream) -> None:
        self.stream, self.count, self.limit = stream, 0, None

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise _Overrun()
        return data


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile takes a bad or cut-short header for the end of the archive and stops quietly;
    here it is an error, so a damaged tar is never half-unpacked without a word."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError) as e:
            raise tarfile.ReadError("the tar stops without its end marker, as if cut short") from e
        except tarfile.InvalidHeaderError as e:
            raise tarfile.ReadError(f"a tar header is invalid: {e}") from e


def _extract_tar(archive: Path, fmt: str, out: "_Output") -> None:
    # Decompress here rather than with tarfile's "r|gz": these readers bound each read's output
    # (tarfile's own bz2 stream does not), check the CRC and notice a cut-short file.
    with open(archive, "rb") as raw:
        meter = _Meter(DECOMPRESS[fmt](raw) if fmt != "tar" else raw)

        def fraction(_written: int = 0) -> float:
            return raw.tell() / max(out.archive_size, 1)

        previous = None  # the last entry read, to say where trouble starts
        try:
            meter.limit = TAR_SLACK
            with _reading(None):  # stream mode: one sequential pass, even through a decompressor
                tar = tarfile.open(fileobj=meter, mode="r|", tarinfo=_StrictTarInfo)
            while True:
                meter.limit = meter.count + TAR_SLACK
                with _reading(previous, at="after"):
                    member = tar.next()
                if member is None:
                    break
                meter.limit = None  # while copying an entry, the limits on written bytes apply
                out.span.raise_if_cancelled()
                _extract_member(tar, member, out, fraction)
                out.progress(fraction())
                previous = member.name
                tar.members.clear()  # tarfile keeps every member it has read: millions, for a big archive
            # Read to the end: the decompressor checks its CRC there, and nothing may hide after the tar.
            meter.limit = meter.count + TAR_SLACK
            while True:
                with _reading(previous, at="after"):
                    rest = meter.read(CHUNK)
                if not rest:
                    break
                if rest.strip(b"\0"):
                    raise _refused(None, "it has data after the end of the tar archive "
                                         "(several archives joined together?); upload a single archive")
        except _Overrun:
            where = f"after “{show(previous)}”" if previous is not None else "before its first entry"
            raise _refused(None, f"it has more than {_human(TAR_SLACK)} of tar headers or padding {where}, "
                                 "which no real archive needs") from None


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, out: "_Output", fraction) -> None:
    name = member.name
    parts = out.claim(name, is_dir=member.isdir())
    if member.isdir():
        out.directory(name, parts)
        return
    if not member.isreg():
        raise _refused(name, _tar_kind(member))
    # a tar header gives the true length of the data that follows, so it can be checked up front
    out.check_size(name, member.size, out.bytes + member.size)
    with _reading(name):
        stream = tar.extractfile(member)
    out.write(name, parts, stream.read, packed=None, fraction=fraction)


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"it is a symbolic link (to “{show(member.linkname)}”); links are not allowed in uploads"
    if member.islnk():
        return f"it is a hard link (to “{show(member.linkname)}”); links are not allowed in uploads"
    if member.ischr() or member.isblk():
        return "it is a device file, not a regular file"
    if member.isfifo():
        return "it is a named pipe (FIFO), not a regular file"
    return f"it is not a regular file or folder (tar entry type {member.type.decode('latin-1')!r})"


# --- writing -----------------------------------------------------------------------------------

class _Output:
    """Puts entries below `dest`, counting what is actually written against the limits."""

    def __init__(self, dest: Path, limits: ExtractLimits, archive_size: int, span: Span) -> None:
        self.dest, self.limits, self.archive_size, self.span = dest, limits, archive_size, span
        self.entries = self.files = self.bytes = 0
        self._made: set[Path] = {dest}  # folders known to exist, checked to be inside `dest`
        self._reported = -1.0

    def claim(self, name: str, *, is_dir: bool) -> tuple[str, ...]:
        """Check an entry's name and count it; returns its path below `dest` as parts."""
        parts = _safe_parts(name)
        if not parts and not is_dir:
            raise _refused(name, "it has an empty name")
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise _refused(name, f"the archive holds more than {self.limits.max_files:,} files and folders")
        return parts

    def check_size(self, name: str, size: int, total: int) -> None:
        """Refuse early on sizes the archive itself declares: this entry's, and the total so far."""
        if size > self.limits.max_file_bytes:
            raise self._file_too_big(name)
        if total > self.limits.max_bytes:
            raise self._archive_too_big(name)

    def directory(self, name: str, parts: tuple[str, ...]) -> None:
        if parts:
            self._folder(name, parts)

    def write(self, name: str, parts: tuple[str, ...], read: Callable[[int], bytes], *,
              packed: int | None, fraction: Callable[[int], float]) -> None:
        """Copy one entry from `read`; `packed` is its compressed size, where the format has one."""
        target = self._folder(name, parts[:-1]) / parts[-1]
        try:
            fd = os.open(target, OPEN_FLAGS, 0o644)
        except FileExistsError:
            raise _refused(name, "a folder of the same name is also in the archive" if target.is_dir()
                           else "the same path appears twice in the archive") from None
        except OSError as e:
            self._blame(name, e)
            raise
        written = chunks = 0
        with open(fd, "wb") as f:
            while True:
                with _reading(name):
                    chunk = read(CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                self._count(name, len(chunk), written, packed)  # before writing: never past a limit
                f.write(chunk)
                chunks += 1
                if chunks % CANCEL_EVERY == 0:
                    self.span.raise_if_cancelled()
                self.progress(fraction(written))
        self.files += 1

    def progress(self, fraction: float) -> None:
        if fraction >= self._reported + 0.001:  # at most ~1000 updates, however many entries
            self._reported = fraction
            self.span.progress(fraction)

    def _count(self, name: str, n: int, written: int, packed: int | None) -> None:
        self.bytes += n
        limits = self.limits
        if written > limits.max_file_bytes:
            raise self._file_too_big(name)
        if self.bytes > limits.max_bytes:
            raise self._archive_too_big(name)
        if packed is not None and written > RATIO_GRACE and written > limits.max_ratio * max(packed, 1):
            raise _refused(name, f"it expands to more than {limits.max_ratio:g} times its compressed size "
                                 "(a “zip bomb”?)")
        if self.bytes > RATIO_GRACE and self.bytes > limits.max_ratio * max(self.archive_size, 1):
            raise _refused(name, f"the archive expands to more than {limits.max_ratio:g} times its size "
                                 "(a “zip bomb”?)")

    def _folder(self, name: str, parts: tuple[str, ...]) -> Path:
        path = self.dest.joinpath(*parts)
        if path not in self._made:
            # Defence in depth: the name was checked, but the disk is what counts.
            if not Path(os.path.realpath(path)).is_relative_to(self.dest):
                raise _refused(name, "it points outside the archive's folder")
            try:
                path.mkdir(mode=0o755, parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise _refused(name, "a file in the archive has the same path as one of its folders") from None
            except OSError as e:
                self._blame(name, e)
                raise
            self._made.add(path)
        return path

    def _file_too_big(self, name: str) -> ArchiveRejected:
        return _refused(name, f"it unpacks to more than {_human(self.limits.max_file_bytes)}, "
                              "the most one file may hold")

    def _archive_too_big(self, name: str) -> ArchiveRejected:
        return _refused(name, f"the archive unpacks to more than {_human(self.limits.max_bytes)}, "
                              "the most this upload may hold")

    @staticmethod
    def _blame(name: str, e: OSError) -> None:
        """Refuse the entry if its name caused `e`; anything else (disk full) is not the archive's fault."""
        if e.errno == errno.ENAMETOOLONG:
            raise _refused(name, "its name is too long for the file system") from None
        if isinstance(e, NotADirectoryError):
            raise _refused(name, "a file in the archive has the same path as one of its folders") from None


# --- names and messages ------------------------------------------------------------------------

DRIVE = re.compile(r"[A-Za-z]:")


def _safe_parts(name: str) -> tuple[str, ...]:
    """The entry's path as folder names below `dest`, or a refusal saying why it is unsafe."""
    if "\0" in name:
        reason = "its name contains a NUL byte"
    elif DRIVE.match(name):
        reason = "it starts with a Windows drive letter; entries must be relative to the archive's folder"
    elif "\\" in name:
        reason = "its name contains a backslash; archives must separate folders with /"
    elif name.startswith("/"):
        reason = "it is an absolute path; entries must be relative to the archive's folder"
    else:
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        if ".." not in parts:
            return parts
        reason = "it points outside the archive's folder"
    raise _refused(name, reason)


@contextmanager
def _reading(name: str | None, at: str = "in") -> Iterator[None]:
    """Turns the many ways a damaged archive fails to read into one refusal, naming the entry."""
    try:
        yield
    except NotImplementedError as e:  # zipfile, for features it lacks
        raise _refused(name, f"it uses a zip feature that is not supported ({e})") from e
    except DAMAGED as e:
        detail = str(e)[:200] or type(e).__name__
        if name is not None:
            detail = f"{detail}, {at} “{show(name)}”"
        raise ArchiveRejected(f"The archive is damaged ({detail}); re-create it and upload it again.") from e


def _refused(name: str | None, reason: str) -> ArchiveRejected:
    return ArchiveRejected(f"Refused “{show(name)}”: {reason}." if name is not None else f"Refused the archive: {reason}.")


def _human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _is_tar(block: bytes) -> bool:
    if block == bytes(512):  # an empty archive is only its end marker
        return True
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")  # checks the header's checksum
    except tarfile.HeaderError:
        return False
    return True


def _looks_like(head: bytes) -> str:
    if not head:
        return "is empty"
    for magic, description in LOOKS_LIKE.items():
        if head.startswith(magic):
            return description
    if b"\0" not in head:
        try:
            head[:-4].decode("utf-8")  # less the end, where the cut may split a character
            return "looks like plain text"
        except UnicodeDecodeError:
            pass
    return "starts with data of an unknown kind"
