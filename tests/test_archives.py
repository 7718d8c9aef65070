"""extract_archive against hostile uploads: every archive is built here, tiny, and every refusal
must name the entry and leave nothing outside `dest`."""

import bz2
import gzip
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.archive_builders import make_tar, make_zip, patch, tar_entry
from tests.fakes import FakeReporter
from workers.pipeline.archives import ArchiveRejected, ExtractLimits, archive_format, extract_archive
from workers.pipeline.reporting import Cancelled, Span

MiB = 2**20
LIMITS = ExtractLimits(max_bytes=64 * MiB, max_files=100, max_file_bytes=32 * MiB, max_ratio=50)
CLASSES = {"cats/1.jpg": os.urandom(3000), "cats/2.jpg": os.urandom(5000), "dogs/1.jpg": b"woof" * 1000}


# --- extracting --------------------------------------------------------------------------------

def extract(archive: Path, tmp_path: Path, limits=LIMITS, reporter=None):
    reporter = reporter or FakeReporter()
    dest = tmp_path / "root" / "dest"
    return extract_archive(archive, dest, limits, Span(reporter, 0, 1)), dest, reporter


def refused(archive: Path, tmp_path: Path, *names: str, limits=LIMITS) -> str:
    """Extraction is refused, the message names each of `names`, and nothing landed outside dest."""
    with pytest.raises(ArchiveRejected) as caught:
        extract(archive, tmp_path, limits)
    message = str(caught.value)
    for name in names:
        assert f"“{name}”" in message, message
    root = tmp_path / "root"
    assert not root.exists() or os.listdir(root) == ["dest"]
    assert set(os.listdir(tmp_path)) <= {"in", "root"}
    assert os.listdir(tmp_path / "in") == [archive.name]
    return message


def tree(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()}


# --- good archives -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, build", [
    ("zip", lambda p, entries: make_zip(p, entries)),
    ("tar", lambda p, entries: make_tar(p, entries)),
    ("tar.gz", lambda p, entries: make_tar(p, entries, mode="w:gz")),
    ("tar.bz2", lambda p, entries: make_tar(p, entries, mode="w:bz2")),
    ("tar.xz", lambda p, entries: make_tar(p, entries, mode="w:xz")),
])
def test_class_folders_unpack_byte_for_byte(tmp_path, fmt, build):
    archive = build(tmp_path / "in" / "upload.bin", list(CLASSES.items()))
    assert archive_format(archive) == fmt
    result, dest, reporter = extract(archive, tmp_path)
    assert tree(dest) == CLASSES
    assert (result.format, result.files, result.bytes) == (fmt, 3, sum(map(len, CLASSES.values())))
    assert reporter.fractions and reporter.fractions[-1] == pytest.approx(1.0)
    assert reporter.fractions == sorted(reporter.fractions)
    assert reporter.logs


def test_folder_entries_and_junk_are_kept_and_permissions_ignored(tmp_path):
    folder = zipfile.ZipInfo("empty/")
    script = zipfile.ZipInfo("tools/run.sh")
    script.external_attr = (stat.S_IFREG | 0o4777) << 16
    archive = make_zip(tmp_path / "in" / "a.zip", [
        (folder, b""), (script, b"#!/bin/sh\n"), ("__MACOSX/._x", b"junk"), ("./.DS_Store", b"junk"),
    ])
    result, dest, _ = extract(archive, tmp_path)
    assert (dest / "empty").is_dir()
    assert set(tree(dest)) == {"tools/run.sh", "__MACOSX/._x", ".DS_Store"}
    assert stat.S_IMODE((dest / "tools/run.sh").stat().st_mode) & 0o7111 == 0
    assert result.files == 3


def test_an_empty_tar_unpacks_to_nothing(tmp_path):
    result, dest, _ = extract(make_tar(tmp_path / "in" / "a.tar", []), tmp_path)
    assert (result.files, os.listdir(dest)) == (0, [])


def test_the_format_comes_from_the_bytes_not_the_name(tmp_path):
    archive = make_tar(tmp_path / "in" / "really-a-tgz.zip", list(CLASSES.items()), mode="w:gz")
    assert archive_format(archive) == "tar.gz"


# --- names that point elsewhere ----------------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("../evil.txt", "outside"),
    ("cats/../../evil.txt", "outside"),
    ("C:\\evil.txt", "drive letter"),
    ("C:evil.txt", "drive letter"),
    ("cats\\evil.txt", "backslash"),
    (".", "empty name"),
    ("", "empty name"),
])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_unsafe_names_are_refused(tmp_path, kind, name, why):
    if kind == "zip" and not name:
        pytest.skip("zipfile cannot write an empty name")
    entries = [("cats/ok.jpg", b"ok"), (name, b"evil")]
    archive = (make_zip if kind == "zip" else make_tar)(tmp_path / "in" / f"a.{kind}", entries)
    message = refused(archive, tmp_path, name)
    assert why in message


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_absolute_paths_are_refused(tmp_path, kind):
    target = tmp_path / "evil.txt"
    archive = (make_zip if kind == "zip" else make_tar)(tmp_path / "in" / f"a.{kind}", [(str(target), b"evil")])
    assert "absolute path" in refused(archive, tmp_path, str(target))
    assert not target.exists()


def test_a_nul_byte_in_a_tar_name_is_refused(tmp_path):
    name = "x" * 120 + "\0.txt"  # long: tarfile keeps it whole in a pax header
    archive = make_tar(tmp_path / "in" / "a.tar", [(name, b"x")], format=tarfile.PAX_FORMAT)
    assert "NUL" in refused(archive, tmp_path, "x" * 120 + "\\x00.txt")


# --- links and special files -------------------------------------------------------------------

def test_a_zip_symlink_is_refused(tmp_path):
    link = zipfile.ZipInfo("cats/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "in" / "a.zip", [(link, b"/etc/passwd"), ("cats/link/x", b"evil")])
    assert "symbolic link" in refused(archive, tmp_path, "cats/link")


@pytest.mark.parametrize("entry, why", [
    (tar_entry("cats/link", type=tarfile.SYMTYPE, linkname="/etc"), "symbolic link"),
    (tar_entry("cats/hard", type=tarfile.LNKTYPE, linkname="cats/1.jpg"), "hard link"),
    (tar_entry("cats/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3), "device"),
    (tar_entry("cats/disk", type=tarfile.BLKTYPE, devmajor=8, devminor=0), "device"),
    (tar_entry("cats/pipe", type=tarfile.FIFOTYPE), "pipe"),
    (tar_entry("cats/odd", type=b"Z"), "not a regular file"),
])
def test_tar_links_and_special_files_are_refused(tmp_path, entry, why):
    archive = make_tar(tmp_path / "in" / "a.tar", [("cats/1.jpg", b"cat"), entry, (entry[0].name + "/x", b"evil")])
    assert why in refused(archive, tmp_path, entry[0].name)


# --- bombs and limits --------------------------------------------------------------------------

def test_a_zip_bomb_is_stopped_by_its_ratio(tmp_path):
    archive = make_zip(tmp_path / "in" / "a.zip", [("cats/zeros.bin", bytes(20 * MiB))])
    assert "times" in refused(archive, tmp_path, "cats/zeros.bin")
    assert (tmp_path / "root/dest/cats/zeros.bin").stat().st_size <= 11 * MiB


def test_a_tar_gz_bomb_is_stopped_by_its_ratio(tmp_path):
    archive = make_tar(tmp_path / "in" / "a.tgz", [("zeros.bin", bytes(20 * MiB))], mode="w:gz", compresslevel=1)
    assert "times its size" in refused(archive, tmp_path, "zeros.bin")


def test_the_total_is_capped_on_bytes_written(tmp_path):
    archive = make_zip(tmp_path / "in" / "a.zip", list(CLASSES.items()))
    message = refused(archive, tmp_path, "dogs/1.jpg", limits=ExtractLimits(max_bytes=8100))
    assert "more than 7.9 KiB" in message
    assert sum(map(len, tree(tmp_path / "root/dest").values())) <= 8100


def test_one_file_is_capped(tmp_path):
    archive = make_tar(tmp_path / "in" / "a.tar", list(CLASSES.items()))
    assert "more than 3.9 KiB" in refused(archive, tmp_path, "cats/2.jpg", limits=ExtractLimits(max_file_bytes=4000))


def test_a_zip_that_understates_a_size_is_stopped_by_counting(tmp_path):
    archive = make_zip(tmp_path / "in" / "a.zip", [("big.bin", b"a" * (3 * MiB))])
    patch(archive, b"PK\x01\x02", 24, struct.pack("<I", 100))  # central directory: uncompressed size
    refused(archive, tmp_path, "big.bin", limits=ExtractLimits(max_file_bytes=MiB))
    assert (tmp_path / "root/dest/big.bin").stat().st_size <= 100


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_too_many_files_are_refused(tmp_path, kind):
    entries = [(f"cats/{i}.jpg", b"x") for i in range(5)]
    archive = (make_zip if kind == "zip" else make_tar)(tmp_path / "in" / f"a.{kind}", entries)
    assert "more than 3 files" in refused(archive, tmp_path, "cats/3.jpg", limits=ExtractLimits(max_files=3))


def test_a_huge_tar_header_is_refused_before_it_is_read(tmp_path):
    info, data = tar_entry("cats/1.jpg", b"cat")
    info.pax_headers = {"comment": "x" * (9 * MiB)}
    archive = make_tar(tmp_path / "in" / "a.tgz", [(info, data)], mode="w:gz", format=tarfile.PAX_FORMAT)
    assert "headers" in refused(archive, tmp_path)


# --- damaged, unsupported and not archives -----------------------------------------------------

def test_an_encrypted_zip_entry_is_refused(tmp_path):
    archive = make_zip(tmp_path / "in" / "a.zip", [("secret.csv", b"a,b\n")])
    patch(archive, b"PK\x03\x04", 6, b"\x01")  # local header: general-purpose flags
    patch(archive, b"PK\x01\x02", 8, b"\x01")  # central directory: the same
    assert "encrypted" in refused(archive, tmp_path, "secret.csv")


def test_an_unsupported_zip_method_is_refused(tmp_path):
    archive = make_zip(tmp_path / "in" / "a.zip", [("a.csv", b"a,b\n")], method=zipfile.ZIP_BZIP2)
    assert "bzip2" in refused(archive, tmp_path, "a.csv")


def test_a_truncated_zip_is_damaged(tmp_path):
    archive = make_zip(tmp_path / "in" / "a.zip", list(CLASSES.items()))
    archive.write_bytes(archive.read_bytes()[:6000])
    assert "damaged" in refused(archive, tmp_path)


def test_a_zip_with_a_corrupt_entry_is_damaged_naming_it(tmp_path):
    archive = make_zip(tmp_path / "in" / "a.zip", [("cats/1.jpg", b"miaow" * 1000)])
    data = bytearray(archive.read_bytes())
    data[60:70] = bytes(10)  # inside the deflated data
    archive.write_bytes(bytes(data))
    assert "damaged" in refused(archive, tmp_path, "cats/1.jpg")


@pytest.mark.parametrize("mode", ["w:gz", "w"])
def test_a_truncated_tar_is_damaged(tmp_path, mode):
    archive = make_tar(tmp_path / "in" / "a.tar", [("a.bin", os.urandom(200_000)), ("b.bin", b"b")], mode=mode)
    archive.write_bytes(archive.read_bytes()[:120_000])
    assert "damaged" in refused(archive, tmp_path, "a.bin")


def test_a_tar_cut_at_an_entry_boundary_is_damaged(tmp_path):
    archive = make_tar(tmp_path / "in" / "a.tar", [("a.bin", b"a" * 512), ("b.bin", b"b" * 512)])
    archive.write_bytes(archive.read_bytes()[:2048])  # both entries, without the end marker
    assert "cut short" in refused(archive, tmp_path, "b.bin")


def test_joined_tars_are_refused(tmp_path):
    first = make_tar(tmp_path / "first.tar", [("a.bin", b"a")])
    archive = make_tar(tmp_path / "in" / "a.tar", [("b.bin", b"b")])
    archive.write_bytes(first.read_bytes() + archive.read_bytes())
    first.unlink()
    assert "after the end" in refused(archive, tmp_path)


@pytest.mark.parametrize("content, looks", [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG image"),
    (b"label,path\ncat,1.jpg\n", "plain text"),
    (b"", "empty"),
    (gzip.compress(b"label,path\ncat,1.jpg\n", mtime=0), "gzip-compressed file but not a tar"),
    (bz2.compress(b"hello " * 200), "bzip2-compressed file but not a tar"),
])
def test_files_that_are_not_archives_are_refused(tmp_path, content, looks):
    archive = tmp_path / "in" / "data.zip"
    archive.parent.mkdir()
    archive.write_bytes(content)
    message = refused(archive, tmp_path, "data.zip")
    assert looks in message
    assert "tar archive" in message


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_the_same_path_twice_is_refused(tmp_path, kind):
    archive = (make_zip if kind == "zip" else make_tar)(
        tmp_path / "in" / f"a.{kind}", [("cats/1.jpg", b"first"), ("cats/./1.jpg", b"second")])
    assert "twice" in refused(archive, tmp_path, "cats/./1.jpg")
    assert (tmp_path / "root/dest/cats/1.jpg").read_bytes() == b"first"


@pytest.mark.parametrize("entries", [
    [("cats", b"file"), ("cats/1.jpg", b"cat")],
    [("cats/1.jpg", b"cat"), ("cats", b"file")],
])
def test_a_file_and_a_folder_of_one_name_are_refused(tmp_path, entries):
    archive = make_zip(tmp_path / "in" / "a.zip", entries)
    refused(archive, tmp_path, entries[1][0])


# --- cancelling --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_cancelled_job_stops_extracting(tmp_path, kind):
    archive = (make_zip(tmp_path / "in" / "a.zip", list(CLASSES.items())) if kind == "zip"
               else make_tar(tmp_path / "in" / "a.tgz", list(CLASSES.items()), mode="w:gz"))
    reporter = FakeReporter(cancel_after=0)
    with pytest.raises(Cancelled):
        extract(archive, tmp_path, reporter=reporter)
