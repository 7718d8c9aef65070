"""Dataset import: layouts, splits, image validation and the loader, on tiny generated images."""

import json
import struct
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fakes import FakeReporter
from workers.pipeline.data import ImageItem, ImportConfig, import_dataset, open_image
from workers.pipeline.reporting import Cancelled, JobError, Span

SUFFIXES = (".jpg", ".png", ".bmp", ".webp")


def run(source: Path, out: Path, reporter: FakeReporter | None = None, **config):
    return import_dataset(source, out, ImportConfig(**config), Span(reporter or FakeReporter(), 0, 1))


def save(path: Path, size=(16, 12), color=(200, 30, 30), mode="RGB", **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **params)
    return path


def class_tree(root: Path, counts: dict[str, int], size=(16, 12)) -> Path:
    """One folder per class, formats taking turns: 000.jpg, 001.png, 002.bmp, 003.webp, 004.jpg, …"""
    for shade, (label, count) in enumerate(counts.items()):
        for index in range(count):
            save(root / label / f"{index:03d}{SUFFIXES[index % 4]}", size, color=(40 * shade, 100, index * 10))
    return root


def png_header(width: int, height: int) -> bytes:
    """A tiny, valid PNG that declares a huge 1-bit image: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def reasons(result) -> dict[str, str]:
    return {row["path"]: row["reason"] for row in result.report["skipped"]}


def val_paths(result) -> set[str]:
    return {item.path for item in result.items if item.split == "val"}


# --- Layouts --------------------------------------------------------------------------------


def test_class_folders_with_mixed_formats(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 12, "dog": 10})
    (source / "cat" / "notes.txt").write_text("not a picture")
    original = (source / "dog" / "003.webp").read_bytes()
    reporter = FakeReporter()

    result = run(source, tmp_path / "out", reporter)

    report = result.report
    assert report["layout"] == "class-folders"
    assert report["split"] == {"source": "generated", "seed": 0, "val_fraction": 0.2}
    assert result.classes == ["cat", "dog"]
    assert report["images"] == len(result.items) == 22
    assert report["formats"] == {"BMP": 5, "JPEG": 6, "PNG": 6, "WEBP": 5}
    assert report["modes"] == {"RGB": 22}
    assert report["classes"] == [
        {"name": "cat", "train": 10, "val": 2, "test": 0, "total": 12},
        {"name": "dog", "train": 8, "val": 2, "test": 0, "total": 10},
    ]
    assert report["sizes"]["width"] == {"min": 16, "median": 16, "max": 16}
    assert report["sizes"]["common"] == [["16×12", 22]]
    assert reasons(result) == {"cat/notes.txt": "not an image (.txt)"}
    assert report["skipped_count"] == 1 and report["warnings"] == []

    images = tmp_path / "out" / "images"
    assert all((images / item.path).is_file() for item in result.items)
    assert (images / next(i.path for i in result.items if i.path.endswith("dog/003.webp"))).read_bytes() == original
    assert not list(source.rglob("*.webp")), "images are moved, not copied"
    assert not list((tmp_path / "out").rglob("*.txt"))
    assert result.bytes == sum(f.stat().st_size for f in (tmp_path / "out").rglob("*") if f.is_file())

    assert reporter.fractions == sorted(reporter.fractions) and reporter.fractions[-1] == 1.0
    assert reporter.logs == [("info", "Imported 22 images in 2 classes (class-folders, generated split); "
                                      "1 files skipped, 0 warnings.")]


def test_generated_split_is_stratified_and_deterministic_per_seed(tmp_path):
    counts = {"cat": 12, "dog": 10, "eel": 2}
    runs = [
        run(class_tree(tmp_path / f"src{n}", counts), tmp_path / f"out{n}", seed=seed)
        for n, seed in enumerate([7, 7, 8])
    ]
    assert val_paths(runs[0]) == val_paths(runs[1])
    assert val_paths(runs[0]) != val_paths(runs[2])
    for result in runs:
        assert {item.label for item in result.items if item.split == "val"} == {"cat", "dog", "eel"}
        assert [row["val"] for row in result.report["classes"]] == [2, 2, 1]


def test_split_folders_keep_the_archive_split_and_accept_validation(tmp_path):
    source = tmp_path / "src"
    for split, labels in {"train": ["cat", "dog"], "validation": ["cat", "dog"], "test": ["cat"]}.items():
        class_tree(source / split, {label: 3 for label in labels})

    result = run(source, tmp_path / "out")

    assert result.report["layout"] == "splits"
    assert result.report["split"] == {"source": "archive", "seed": None, "val_fraction": None}
    assert result.report["classes"] == [
        {"name": "cat", "train": 3, "val": 3, "test": 3, "total": 9},
        {"name": "dog", "train": 3, "val": 3, "test": 0, "total": 6},
    ]
    assert {item.path.split("/")[0] for item in result.items} == {"train", "val", "test"}
    assert all(item.path.startswith(f"{item.split}/{item.label}/") for item in result.items)


def test_manifest_without_split_column(tmp_path):
    source = tmp_path / "src"
    for index in range(4):
        save(source / "pics" / f"a{index}.png")
        save(source / "pics" / f"b{index}.jpg")
    save(source / "pics" / "unlisted.png")
    rows = [f"pics/a{i}.png,ant" for i in range(4)] + [f"pics/b{i}.jpg,bee" for i in range(4)] + ["pics/gone.png,bee"]
    (source / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")

    result = run(source, tmp_path / "out")

    assert result.report["layout"] == "manifest"
    assert result.report["split"]["source"] == "generated"
    assert result.classes == ["ant", "bee"]
    assert [row["total"] for row in result.report["classes"]] == [4, 4]
    assert reasons(result) == {"pics/gone.png": "file not found"}
    assert any("1 files in the archive are not listed in labels.csv" in w for w in result.report["warnings"])
    assert (source / "pics" / "unlisted.png").exists(), "unlisted files stay where they are"


def test_manifest_with_split_column(tmp_path):
    source = tmp_path / "src"
    rows = ["path , Label , SPLIT"]
    for index, split in enumerate(["train", "train", "valid", "test"]):
        for label in ("ant", "bee"):
            save(source / label / f"{index}.png")
            rows.append(f"{label}/{index}.png,{label},{split}")
    (source / "manifest.csv").write_text("\n".join(rows) + "\n")

    result = run(source, tmp_path / "out")

    assert result.report["layout"] == "manifest"
    assert result.report["split"]["source"] == "archive"
    assert result.report["classes"][0] == {"name": "ant", "train": 2, "val": 1, "test": 1, "total": 4}


@pytest.mark.parametrize("bad", ["../x.png", "/etc/x.png", "pics/../../x.png"])
def test_manifest_path_outside_the_archive_is_an_error(tmp_path, bad):
    source = tmp_path / "src"
    save(source / "pics" / "a.png")
    (source / "labels.csv").write_text(f"path,label\npics/a.png,ant\n{bad},bee\n")

    with pytest.raises(JobError, match=r"labels\.csv row 3: the path .* stay in the archive"):
        run(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert (source / "pics" / "a.png").exists()


def test_manifest_unknown_split_is_an_error(tmp_path):
    source = tmp_path / "src"
    save(source / "a.png")
    (source / "labels.csv").write_text("path,label,split\na.png,ant,holdout\n")

    with pytest.raises(JobError, match=r"row 2: unknown split 'holdout'; use train, val .* or test"):
        run(source, tmp_path / "out")


def test_single_wrapper_folder_is_descended(tmp_path):
    source = tmp_path / "src"
    class_tree(source / "my-dataset", {"cat": 3, "dog": 3})
    save(source / "__MACOSX" / "my-dataset" / "cat" / "._000.jpg")
    (source / ".DS_Store").write_bytes(b"\0\0")
    (source / "my-dataset" / "Thumbs.db").write_bytes(b"\0\0")

    result = run(source, tmp_path / "out")

    assert result.classes == ["cat", "dog"] and result.report["images"] == 6
    assert result.report["skipped_count"] == 0


# --- Images ---------------------------------------------------------------------------------


def sixteen_bit(path: Path) -> Path:
    Image.fromarray(np.array([[0, 32896, 65535]] * 2, dtype=np.uint16)).save(path)
    return path


def rgba(path: Path) -> Path:
    image = Image.new("RGBA", (3, 2), (0, 0, 255, 255))
    image.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red
    image.save(path)
    return path


def palette(path: Path) -> Path:
    image = Image.new("P", (3, 2), 1)
    image.putpalette([0, 0, 0, 10, 200, 30])
    image.save(path)
    return path


def floats(path: Path) -> Path:
    Image.fromarray(np.array([[0.0, 0.5, 1.0]] * 2, dtype=np.float32)).save(path)
    return path


@pytest.mark.parametrize(
    "make, name, mode, pixels",
    [
        (lambda p: save(p, (3, 2), 77, "L"), "gray.png", "L", [(77, 77, 77)] * 3),
        (rgba, "rgba.png", "RGBA", [(255, 255, 255), (0, 0, 255), (0, 0, 255)]),
        (sixteen_bit, "deep.png", "I;16", [(0, 0, 0), (128, 128, 128), (255, 255, 255)]),
        (palette, "palette.png", "P", [(10, 200, 30)] * 3),
        (lambda p: save(p, (3, 2), (0, 0, 0, 0), "CMYK"), "cmyk.jpg", "CMYK", [(255, 255, 255)] * 3),
        (floats, "floats.tif", "F", [(0, 0, 0), (127, 127, 127), (255, 255, 255)]),
    ],
)
def test_open_image_gives_8_bit_rgb(tmp_path, make, name, mode, pixels):
    path = make(tmp_path / name)
    with Image.open(path) as found:
        assert found.mode == mode

    image = open_image(path)

    assert (image.mode, image.size) == ("RGB", (3, 2))
    assert [image.getpixel((x, 0)) for x in range(3)] == pixels


def rotated_jpeg(path: Path) -> Path:
    """40×20 pixels, red left half, blue right half, EXIF orientation 6 (rotate 90° clockwise to view)."""
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif, quality=95)
    return path


def test_open_image_applies_exif_orientation(tmp_path):
    image = open_image(rotated_jpeg(tmp_path / "turned.jpg"))

    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]


def test_modes_and_rotated_sizes_in_the_report(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 2})
    rotated_jpeg(source / "dog" / "turned.jpg")
    sixteen_bit(source / "dog" / "deep.png")
    palette(source / "dog" / "palette.png")
    rgba(source / "dog" / "rgba.png")

    result = run(source, tmp_path / "out", min_class_images=1)

    turned = next(item for item in result.items if item.path.endswith("turned.jpg"))
    assert (turned.width, turned.height, turned.mode, turned.format) == (20, 40, "RGB", "JPEG")
    assert result.report["modes"] == {"I;16": 1, "P": 1, "RGB": 3, "RGBA": 1}
    with Image.open(tmp_path / "out" / turned.thumb) as thumb:
        assert thumb.height > thumb.width, "thumbnails are upright"


def test_broken_files_are_skipped_with_reasons(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 2, "dog": 2})
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(source / "cat" / "cut.jpg", quality=95)
    whole = (source / "cat" / "cut.jpg").read_bytes()
    (source / "cat" / "cut.jpg").write_bytes(whole[: len(whole) * 6 // 10])
    (source / "cat" / "noise.png").write_bytes(np.random.default_rng(1).bytes(300))
    (source / "dog" / "bomb.png").write_bytes(png_header(20_000, 20_000))
    save(source / "dog" / "really-a-gif.png", mode="P", color=1, format="GIF")
    save(source / "dog" / "anim.gif", mode="P", color=1)
    (source / "dog" / "readme.txt").write_text("hello")
    limit = Image.MAX_IMAGE_PIXELS

    result = run(source, tmp_path / "out", max_image_pixels=1_000_000)

    assert reasons(result) == {
        "cat/cut.jpg": "truncated or damaged image",
        "cat/noise.png": "not a readable image (unknown file format)",
        "dog/anim.gif": "unsupported image format GIF",
        "dog/bomb.png": "decompression bomb: 20000×20000 pixels is more than the limit",
        "dog/readme.txt": "not an image (.txt)",
        "dog/really-a-gif.png": "unsupported image format GIF",
    }
    assert result.report["images"] == 4 and result.report["skipped_count"] == 6
    assert Image.MAX_IMAGE_PIXELS == limit, "the global limit is restored"
    assert not list((tmp_path / "out").rglob("bomb.png"))


def test_pixel_limit_covers_pillows_warning_and_error_ranges(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 2, "dog": 2})
    save(source / "cat" / "over.png", (20, 20))  # 400 pixels: Pillow only warns (≤ 2 × limit)
    save(source / "dog" / "far-over.png", (40, 40))  # 1600 pixels: Pillow raises

    result = run(source, tmp_path / "out", max_image_pixels=300)

    assert reasons(result) == {
        "cat/over.png": "decompression bomb: 20×20 pixels is more than the limit",
        "dog/far-over.png": "decompression bomb: 40×40 pixels is more than the limit",
    }


def test_warnings_for_small_imbalanced_and_empty_classes(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 12, "dog": 1})
    (source / "eel").mkdir()
    (source / "eel" / "broken.png").write_bytes(b"nope")

    result = run(source, tmp_path / "out")

    assert result.classes == ["cat", "dog"]
    assert result.report["warnings"] == [
        "Class 'eel' has no valid images and was left out.",
        "Class 'dog' has only 1 images; at least 10 are recommended.",
        "Classes are imbalanced: 'cat' has 12 images, 'dog' only 1.",
    ]
    assert result.report["classes"][1] == {"name": "dog", "train": 1, "val": 0, "test": 0, "total": 1}


def test_fewer_than_two_classes_is_an_error(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 3})
    (source / "dog").mkdir()
    (source / "dog" / "broken.jpg").write_bytes(b"nope")

    with pytest.raises(JobError, match=r"needs at least two classes; found 1 \(cat\)\. Without a valid image: dog\. "
                                       r"Images without classes, for calibration only, import as an unlabelled"):
        run(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert len(list(source.rglob("*.*"))) == 4, "the source is left as it was"


@pytest.mark.parametrize("extra", ["none", "a folder without images"])
def test_loose_images_import_as_an_unlabelled_dataset(tmp_path, extra):
    source = tmp_path / "src"
    for index in range(12):
        save(source / "photos" / f"{index:02d}.png", color=(20 * index, 0, 0))
    if extra != "none":
        (source / "photos" / "docs").mkdir()
        (source / "photos" / "docs" / "readme.txt").write_text("hi")

    result = run(source, tmp_path / "out")

    assert result.classes == [] and len(result.items) == 12
    assert {(item.label, item.split) for item in result.items} == {("", "train")}  # calibration reads train
    assert [item.path for item in result.items] == [f"train/{index:02d}.png" for index in range(12)]
    assert all((tmp_path / "out" / "images" / item.path).is_file() for item in result.items)
    report = result.report
    assert (report["layout"], report["classes"], report["split"]["source"], report["warnings"]) == (
        "unlabelled", [], "none", [])
    assert report["skipped"] == ([{"path": "photos/docs/readme.txt", "reason": "not an image (.txt)"}]
                                 if extra != "none" else [])
    assert json.loads((tmp_path / "out" / "index.json").read_text())["labelled"] is False


def test_images_in_folders_that_are_not_classes_import_unlabelled_when_asked(tmp_path):
    source = class_tree(tmp_path / "src", {"2023": 3, "2024": 3})
    save(source / "2024" / "trip" / "000.jpg")  # the same name in another folder

    result = run(source, tmp_path / "out", labelling="unlabelled")

    assert result.classes == [] and {item.label for item in result.items} == {""}
    paths = [item.path for item in result.items]
    assert len(set(paths)) == 7 and all(path.count("/") == 1 and path.startswith("train/") for path in paths)
    assert sorted(path for path in paths if path.startswith("train/000")) == [
        "train/000-1.jpg", "train/000-2.jpg", "train/000.jpg"]
    assert result.report["warnings"] == ["Only 7 images: calibration needs at least 10 (NNCF recommends 300)."]


def test_loose_images_asked_to_be_labelled_are_an_error(tmp_path):
    source = tmp_path / "src"
    for index in range(3):
        save(source / f"{index}.png")

    with pytest.raises(JobError, match="one folder per class.*unlabelled dataset, for calibration only"):
        run(source, tmp_path / "out", labelling="labelled")
    assert not (tmp_path / "out").exists()


def test_name_clashes_get_distinct_names(tmp_path):
    source = class_tree(tmp_path / "src", {"dog": 2})
    save(source / "cat" / "a" / "x.png")
    save(source / "cat" / "b" / "x.png")
    save(source / "cat" / "x-1.png")  # taken by the time b/x.png looks for a name

    result = run(source, tmp_path / "out", val_fraction=0)

    assert sorted(item.path for item in result.items if item.label == "cat") == [
        "train/cat/x-1.png", "train/cat/x-2.png", "train/cat/x.png",
    ]


# --- Outputs --------------------------------------------------------------------------------


def test_thumbnails_are_small_rgb_jpegs(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 3, "dog": 3}, size=(32, 24))
    palette(source / "dog" / "palette.png")

    result = run(source, tmp_path / "out", thumb_size=16)

    assert [item.thumb for item in result.items] == [f"thumbs/{n:06d}.jpg" for n in range(7)]
    for item in result.items:
        with Image.open(tmp_path / "out" / item.thumb) as thumb:
            assert (thumb.format, thumb.mode) == ("JPEG", "RGB")
            assert max(thumb.size) <= 16
    assert len(list((tmp_path / "out" / "thumbs").iterdir())) == 7


def test_index_json_round_trips(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    (source / "cat" / "notes.txt").write_text("x")

    result = run(source, tmp_path / "out")

    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index == {"labelled": True, "classes": result.classes, "items": [asdict(i) for i in result.items],
                     "report": result.report}
    assert [ImageItem(**item) for item in index["items"]] == result.items


def test_cancelling_stops_the_import_and_leaves_the_source(tmp_path):
    source = class_tree(tmp_path / "src", {"cat": 5, "dog": 5})

    with pytest.raises(Cancelled):
        run(source, tmp_path / "out", FakeReporter(cancel_after=3))
    assert not (tmp_path / "out").exists()
    assert len(list(source.rglob("*.*"))) == 10
