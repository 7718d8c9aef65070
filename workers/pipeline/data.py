"""Dataset import: an extracted archive (paths safe, contents untrusted) becomes a clean
image-classification dataset folder. No Django, no Celery.

    out/images/<split>/<label>/<name>   the original files, moved, bytes untouched
                                        (unlabelled: out/images/train/<name>)
    out/thumbs/<index:06d>.jpg          small upright RGB previews, one per item
    out/index.json                      {"classes", "items", "report"}

Every file is decoded once here, so later steps (gallery, training, evaluation) can trust what
they find. Problems with single files are reported and skipped; only problems with the dataset
as a whole (layout, manifest, fewer than two classes) raise JobError.

An archive of images without classes (loose images, or any folders the uploader says are not
classes) imports as an unlabelled dataset: every image in the train split with an empty label,
no class counts. It serves post-training calibration only.
"""

import contextlib
import csv
import json
import os
import random
import shutil
import statistics
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps, UnidentifiedImageError

from workers.pipeline.reporting import JobError, Span

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
SPLITS = ("train", "val", "test")

FORMATS = {"JPEG", "PNG", "BMP", "WEBP"}
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IGNORED_NAMES = {"__MACOSX", "Thumbs.db"}
MAX_SKIPPED_LISTED = 1000

LAYOUT_HELP = (
    "Put the images in one folder per class (cat/…, dog/…), optionally inside train/, val/ and "
    "test/ folders, or add one CSV file at the top with the header path,label or path,label,split. "
    "Images without classes (loose in the archive) import as an unlabelled dataset, for calibration only."
)
LABELLINGS = ("auto", "labelled", "unlabelled")
MIN_CALIBRATION = 10  # workers/pipeline/quantization.py refuses fewer


@dataclass(frozen=True)
class ImportConfig:
    val_fraction: float = 0.2  # used only when the archive has no splits
    seed: int = 0
    thumb_size: int = 128
    min_class_images: int = 10  # fewer → warning naming the class
    imbalance_ratio: float = 10.0  # largest/smallest class above this → warning
    max_image_pixels: int = 64_000_000  # larger → skipped as a decompression bomb
    labelling: str = "auto"  # "auto": class folders → labelled, loose images → unlabelled


@dataclass(frozen=True)
class ImageItem:
    path: str  # relative to out/"images", posix, e.g. "train/cat/0001.jpg"
    label: str
    split: str  # "train" | "val" | "test"
    width: int  # after EXIF rotation
    height: int
    mode: str  # Pillow mode as found: "RGB", "L", "RGBA", "I;16", "P", ...
    format: str  # "JPEG", "PNG", "BMP", "WEBP"
    thumb: str  # relative to out, e.g. "thumbs/000123.jpg"


@dataclass
class ImportResult:
    items: list[ImageItem]
    classes: list[str]  # sorted
    report: dict  # JSON-safe
    bytes: int  # total size of out/


# --- Loading -------------------------------------------------------------------------------


def open_image(path: Path) -> Image.Image:
    """Decoded, upright, 8-bit RGB, whatever the file holds: the loader every step shares."""
    with Image.open(path) as image:
        return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)  # also loads and detaches from the file
    if image.mode == "I" or image.mode.startswith("I;16"):
        # Pillow would clip 16-bit values at 255 (a white image); scale the 16-bit range instead.
        image = image.convert("I").point(lambda v: v / 257).convert("L")
    elif image.mode == "F":
        # Floats have no standard range: stretch this image's own range to 0..255.
        low, high = image.getextrema()
        image = image.point(lambda v: (v - low) * (255 / ((high - low) or 1))).convert("L")
    if image.has_transparency_data:
        # Dropping alpha would show whatever colour hides under transparent pixels; use white.
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return image.convert("RGB")


# --- Validation ----------------------------------------------------------------------------


class _Skip(Exception):
    """A file that cannot be part of the dataset; the message is the reason shown to the user."""


@contextlib.contextmanager
def _pixel_limit(limit: int | None):
    """Pillow checks the declared size on open: over the limit warns, over twice raises.
    Make both errors for this call only. None switches the check off."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _suffix_problem(path: Path) -> str | None:
    """Why the file name alone rules the file out, if it does."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return None
    known = Image.registered_extensions().get(suffix)  # .gif → GIF, .tif → TIFF, …
    return f"unsupported image format {known}" if known else f"not an image ({suffix or path.name})"


def _decode(path: Path, config: ImportConfig) -> tuple[Image.Image, str, str]:
    """Fully decode one untrusted file: (upright RGB image, mode as found, format), or _Skip."""
    if problem := _suffix_problem(path):
        raise _Skip(problem)
    if not os.path.lexists(path):
        raise _Skip("file not found")
    if path.is_symlink() or not path.is_file():  # a link could point anywhere; a FIFO would hang
        raise _Skip("not a regular file")
    with path.open("rb") as file, _pixel_limit(config.max_image_pixels):
        try:
            image = Image.open(file)  # reads the header only
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _Skip(f"decompression bomb: {_declared_size(file)} pixels is more than the limit") from None
        except Exception as error:  # any parser failure on untrusted bytes is this file's problem
            detail = "unknown file format" if isinstance(error, UnidentifiedImageError) else str(error)
            raise _Skip(f"not a readable image ({detail or type(error).__name__})") from None
        # A camera JPEG with a second picture inside opens as MPO; it is still a JPEG file.
        fmt = "JPEG" if image.format == "MPO" else image.format
        if fmt not in FORMATS:  # decided before decoding: some plugins decode with external tools
            image.close()
            raise _Skip(f"unsupported image format {fmt}")
        try:
            with image:
                image.verify()  # catches what decoding may not (e.g. PNG checksums)
            file.seek(0)
            with Image.open(file) as image:  # verify() leaves the image unusable: reopen
                image.load()  # decodes every pixel: truncated data fails here
                return _to_rgb(image), image.mode, fmt
        except Exception:
            raise _Skip("truncated or damaged image") from None


def _declared_size(file) -> str:
    file.seek(0)
    with _pixel_limit(None), Image.open(file) as image:  # header only; nothing is decoded
        return "{}×{}".format(*image.size)


# --- Layouts -------------------------------------------------------------------------------


@dataclass
class _Entry:
    path: Path
    label: str
    split: str | None  # None: the archive has no splits


@dataclass
class _Scan:
    layout: str
    entries: list[_Entry]
    labels: set[str]  # every class the archive names, even ones that end up empty
    has_splits: bool
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_NAMES


def _listing(folder: Path) -> tuple[list[Path], list[Path]]:
    """(folders, files) directly in folder, sorted, without OS clutter or links to folders."""
    folders, files = [], []
    for child in sorted(folder.iterdir()):
        if not _ignored(child.name):
            (folders if child.is_dir() and not child.is_symlink() else files).append(child)
    return folders, files


def _files(folder: Path) -> list[Path]:
    """Every file below folder, sorted, without OS clutter."""
    found = []
    for parent, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not _ignored(name))
        found += [Path(parent, name) for name in sorted(names) if not _ignored(name)]
    return found


def _dataset_root(source: Path) -> Path:
    """Archives often wrap everything in one folder (my-dataset/…): look inside it."""
    folders, files = _listing(source)
    wanted = IMAGE_SUFFIXES | {".csv"}
    if len(folders) == 1 and not any(file.suffix.lower() in wanted for file in files):
        return folders[0]
    return source


def _misplaced(files: list[Path], reason: str) -> list[tuple[Path, str]]:
    """Files outside where images belong: the reason is the place, unless they are no images at all."""
    return [(file, _suffix_problem(file) or reason) for file in files]


def _scan(source: Path, labelling: str = "auto") -> _Scan:
    root = _dataset_root(source)
    folders, files = _listing(root)
    csvs = [file for file in files if file.suffix.lower() == ".csv"]
    manifest = _manifest_header(csvs[0]) if len(csvs) == 1 else None
    if labelling == "unlabelled" or (labelling == "auto" and not manifest and _loose_images_only(folders, files)):
        scan = _Scan("unlabelled", [_Entry(file, "", None) for file in _files(root)], set(), False)
    elif header := manifest:
        scan = _scan_manifest(source, root, csvs[0], header)
    else:
        splits = {folder: SPLIT_NAMES.get(folder.name.lower()) for folder in folders}
        named = set(splits.values()) - {None}
        if "train" in named and len(named) >= 2:
            scan = _scan_splits(folders, files, splits)
        else:
            scan = _scan_class_folders(folders, files)
    if not any(entry.path.suffix.lower() in IMAGE_SUFFIXES for entry in scan.entries):
        raise JobError(f"Found no images in a layout this importer knows. {LAYOUT_HELP}")
    return scan


def _loose_images_only(folders: list[Path], files: list[Path]) -> bool:
    """A flat archive: images at the top, none in any folder (which would be a class)."""
    def images(paths: list[Path]) -> bool:
        return any(path.suffix.lower() in IMAGE_SUFFIXES for path in paths)

    return images(files) and not any(images(_files(folder)) for folder in folders)


def _scan_class_folders(folders: list[Path], files: list[Path]) -> _Scan:
    entries = [_Entry(file, folder.name, None) for folder in folders for file in _files(folder)]
    skipped = _misplaced(files, "not in a class folder")
    return _Scan("class-folders", entries, {folder.name for folder in folders}, False, skipped)


def _scan_splits(folders: list[Path], files: list[Path], splits: dict[Path, str | None]) -> _Scan:
    scan = _Scan("splits", [], set(), True)
    for folder in folders:
        if splits[folder] is None:
            scan.skipped += _misplaced(_files(folder), "outside the train/val/test folders")
            continue
        classes, loose = _listing(folder)
        scan.skipped += _misplaced(loose, "not in a class folder")
        scan.labels |= {each.name for each in classes}
        scan.entries += [_Entry(file, each.name, splits[folder]) for each in classes for file in _files(each)]
    scan.skipped += _misplaced(files, "outside the train/val/test folders")
    return scan


# --- Manifest ------------------------------------------------------------------------------


def _manifest_header(manifest: Path) -> list[str] | None:
    """The normalised header if this CSV is a manifest; any other CSV is just another file."""
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as file:
            header = [cell.strip().lower() for cell in next(csv.reader(file), [])]
    except (UnicodeDecodeError, csv.Error):
        return None
    return header if header in (["path", "label"], ["path", "label", "split"]) else None


def _manifest_rows(manifest: Path) -> list[list[str]]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as file:
            return list(csv.reader(file))[1:]
    except (UnicodeDecodeError, csv.Error) as error:
        raise JobError(f"{manifest.name} is not a readable UTF-8 CSV file ({error}).") from None


def _scan_manifest(source: Path, root: Path, manifest: Path, header: list[str]) -> _Scan:
    has_splits = "split" in header
    scan = _Scan("manifest", [], set(), has_splits)
    listed = {manifest}
    for number, row in enumerate(_manifest_rows(manifest), start=2):  # row 1 is the header
        if not any(cell.strip() for cell in row):
            continue
        where = f"{manifest.name} row {number}"
        if len(row) != len(header):
            raise JobError(f"{where}: expected {len(header)} values ({','.join(header)}), found {len(row)}.")
        cells = [cell.strip() for cell in row]
        path, label = _manifest_path(cells[0], root, source, where), _class_name(cells[1], where)
        split = None
        if has_splits and (split := SPLIT_NAMES.get(cells[2].lower())) is None:
            raise JobError(f"{where}: unknown split {cells[2]!r}; use train, val (or valid, validation) or test.")
        if path in listed:
            scan.skipped.append((path, "listed twice in the manifest"))
            continue
        listed.add(path)
        scan.labels.add(label)
        scan.entries.append(_Entry(path, label, split))
    if unlisted := len(set(_files(root)) - listed):
        scan.warnings.append(f"{unlisted} files in the archive are not listed in {manifest.name} and were left out.")
    return scan


def _manifest_path(cell: str, root: Path, source: Path, where: str) -> Path:
    relative = PurePosixPath(cell)
    path = root / relative
    outside = relative.is_absolute() or ".." in relative.parts
    # resolve() also catches a link inside the archive that points out of it.
    if not cell or outside or not path.resolve().is_relative_to(source.resolve()):
        raise JobError(f"{where}: the path {cell!r} must be relative to the CSV file's folder and stay in the archive.")
    return path


def _class_name(label: str, where: str) -> str:
    """The label becomes a folder name in the dataset: it must be one, and a harmless one."""
    if not label or label in (".", "..") or any(char in label for char in "/\\\0") or len(label.encode()) > 255:
        raise JobError(f"{where}: {label!r} cannot be a class name; use a short name without slashes.")
    return label


# --- Import --------------------------------------------------------------------------------


@dataclass
class _Valid:
    entry: _Entry
    width: int
    height: int
    mode: str
    format: str
    thumb: str


def import_dataset(source: Path, out: Path, config: ImportConfig, span: Span) -> ImportResult:
    out.mkdir(parents=True)
    try:
        if config.labelling not in LABELLINGS:
            raise JobError(f"labelling is “{config.labelling}”; it is one of {', '.join(LABELLINGS)}.")
        scan = _scan(source, config.labelling)
        valid, skipped = _validate(scan, source, out, config, span)
        labelled = scan.layout != "unlabelled"
        classes = sorted({each.entry.label for each in valid}) if labelled else []
        empty = sorted(scan.labels - set(classes))
        if not labelled and not valid:
            first = skipped[0] if skipped else {"path": "", "reason": "no files"}
            raise JobError(f"None of the {len(scan.entries)} files is a readable image "
                           f"(the first, {first['path']}: {first['reason']}).")
        if labelled and len(classes) < 2:
            found = f"{len(classes)} ({', '.join(classes)})" if classes else "none"
            without = f" Without a valid image: {', '.join(empty)}." if empty else ""
            raise JobError(f"A classification dataset needs at least two classes; found {found}.{without} Images "
                           f"without classes, for calibration only, import as an unlabelled dataset (Labels: "
                           f"unlabelled).")
        if not labelled:
            splits = ["train"] * len(valid)  # calibration reads the train split
        elif scan.has_splits:
            splits = [each.entry.split for each in valid]
        else:
            splits = _stratified_splits(valid, config)
    except BaseException:
        # Nothing has been moved yet: leave no half-built dataset behind and the source intact.
        shutil.rmtree(out, ignore_errors=True)
        raise

    items = _move_into_place(valid, splits, out / "images")
    report = _report(scan, items, classes, empty, skipped, config)
    index = {"labelled": labelled, "classes": classes, "items": [asdict(item) for item in items], "report": report}
    (out / "index.json").write_text(json.dumps(index, ensure_ascii=False))
    span.progress(1.0)
    what = (f"in {len(classes)} classes ({scan.layout}, {report['split']['source']} split)" if labelled
            else "without labels (for calibration only)")
    span.reporter.log(
        f"Imported {len(items)} images {what}; {len(skipped)} files skipped, {len(report['warnings'])} warnings."
    )
    size = sum(file.stat().st_size for file in out.rglob("*") if file.is_file())
    return ImportResult(items, classes, report, size)


def _validate(scan: _Scan, source: Path, out: Path, config: ImportConfig, span: Span) -> tuple[list, list[dict]]:
    """Decode every candidate and write its thumbnail. Returns (valid, skipped as report rows)."""
    (out / "thumbs").mkdir()
    valid: list[_Valid] = []
    skipped = list(scan.skipped)
    for done, entry in enumerate(scan.entries, start=1):
        span.raise_if_cancelled()
        try:
            image, mode, fmt = _decode(entry.path, config)
        except _Skip as skip:
            skipped.append((entry.path, str(skip)))
        else:
            thumb = f"thumbs/{len(valid):06d}.jpg"
            width, height = image.size
            image.thumbnail((config.thumb_size, config.thumb_size))
            image.save(out / thumb, "JPEG", quality=85)
            valid.append(_Valid(entry, width, height, mode, fmt, thumb))
        span.progress(done / len(scan.entries))
    return valid, [{"path": path.relative_to(source).as_posix(), "reason": reason} for path, reason in skipped]


def _archive_splits(valid: list[_Valid]) -> list[str]:
    return [each.entry.split for each in valid]


def _stratified_splits(valid: list[_Valid], config: ImportConfig) -> list[str]:
    """Per class: sort, shuffle with a seed of its own, the first share goes to val."""
    splits = ["train"] * len(valid)
    by_label: dict[str, list[int]] = {}
    for index, each in enumerate(valid):
        by_label.setdefault(each.entry.label, []).append(index)
    for label, indices in by_label.items():
        indices.sort(key=lambda index: valid[index].entry.path)
        random.Random(f"{config.seed}:{label}").shuffle(indices)
        count = round(len(indices) * config.val_fraction)
        if len(indices) >= 2 and config.val_fraction > 0:
            count = max(count, 1)
        count = min(count, len(indices) - 1)  # every class keeps a training image
        for index in indices[:count]:
            splits[index] = "val"
    return splits


def _move_into_place(valid: list[_Valid], splits: list[str], images: Path) -> list[ImageItem]:
    items, taken = [], set()
    for each, split in zip(valid, splits, strict=True):
        folder = f"{split}/{each.entry.label}" if each.entry.label else split
        name = _free_name(folder, each.entry.path.name, taken)
        (images / folder).mkdir(parents=True, exist_ok=True)
        os.replace(each.entry.path, images / folder / name)
        items.append(ImageItem(
            f"{folder}/{name}", each.entry.label, split, each.width, each.height, each.mode, each.format, each.thumb
        ))
    return items


def _free_name(folder: str, name: str, taken: set[str]) -> str:
    """Nested folders or a manifest can bring the same file name twice into one folder."""
    stem, suffix = os.path.splitext(name)
    candidate, number = name, 1
    while f"{folder}/{candidate}".lower() in taken:  # lower(): safe on case-insensitive disks too
        candidate, number = f"{stem}-{number}{suffix}", number + 1
    taken.add(f"{folder}/{candidate}".lower())
    return candidate


def _report(scan: _Scan, items: list[ImageItem], classes: list[str], empty: list[str], skipped: list[dict],
            config: ImportConfig) -> dict:
    counts = {label: Counter() for label in classes}
    for item in items:
        if item.label:  # an unlabelled dataset has no class counts
            counts[item.label][item.split] += 1
    rows = [{"name": label, **{split: counts[label][split] for split in SPLITS}, "total": counts[label].total()}
            for label in classes]
    widths, heights = [item.width for item in items], [item.height for item in items]
    generated = not scan.has_splits
    unlabelled = scan.layout == "unlabelled"
    return {
        "layout": scan.layout,
        "split": {
            "source": "none" if unlabelled else "generated" if generated else "archive",
            "seed": config.seed if generated and not unlabelled else None,
            "val_fraction": config.val_fraction if generated and not unlabelled else None,
        },
        "images": len(items),
        "classes": rows,
        "skipped": skipped[:MAX_SKIPPED_LISTED],
        "skipped_count": len(skipped),
        "sizes": {
            # median_low: an actual size, and an int like min and max.
            "width": {"min": min(widths), "median": statistics.median_low(widths), "max": max(widths)},
            "height": {"min": min(heights), "median": statistics.median_low(heights), "max": max(heights)},
            "common": [[f"{w}×{h}", n] for (w, h), n in Counter(zip(widths, heights)).most_common(10)],
        },
        "modes": dict(sorted(Counter(item.mode for item in items).items())),
        "formats": dict(sorted(Counter(item.format for item in items).items())),
        "warnings": _unlabelled_warnings(items) if unlabelled else _warnings(scan, rows, empty, config),
    }


def _unlabelled_warnings(items: list[ImageItem]) -> list[str]:
    if len(items) >= MIN_CALIBRATION:
        return []
    return [f"Only {len(items)} images: calibration needs at least {MIN_CALIBRATION} (NNCF recommends 300)."]


def _warnings(scan: _Scan, rows: list[dict], empty: list[str], config: ImportConfig) -> list[str]:
    found = scan.warnings + [f"Class '{label}' has no valid images and was left out." for label in empty]
    found += [
        f"Class '{row['name']}' has only {row['total']} images; at least {config.min_class_images} are recommended."
        for row in rows
        if row["total"] < config.min_class_images
    ]
    largest = max(rows, key=lambda row: row["total"])
    smallest = min(rows, key=lambda row: row["total"])
    if largest["total"] > config.imbalance_ratio * smallest["total"]:
        found.append(
            f"Classes are imbalanced: '{largest['name']}' has {largest['total']} images, "
            f"'{smallest['name']}' only {smallest['total']}."
        )
    if scan.has_splits and not sum(row["val"] for row in rows):
        found.append("The archive's splits hold no val images, so training cannot be validated.")
    return found
