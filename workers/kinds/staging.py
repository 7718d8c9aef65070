"""What the kinds share on the worker: folders to stage inputs in, an artifact staged for the
jail, a training loop's checkpoints in storage, the decoded-image cache entry of a dataset, and a
published folder checked to hold plain files."""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from webapp.core.files import delete_file, local_file, local_tree, store_copy
from webapp.registry.models import Artifact
from workers.jail import checked_tree
from workers.pipeline import imagecache
from workers.pipeline import preprocessing as recipe
from workers.runner import JobRun


def epoch_checkpoints(run: JobRun) -> tuple:
    """A training loop's checkpoints in storage under jobs/<id>/: the file to resume from (a lost
    worker's last checkpoint), and the callback that stores each as the jailed step hands it over."""
    checkpoints = f"jobs/{run.job.id}"
    resume = local_file(run.checkpoint["key"], staging(run, "resume")) if run.checkpoint else None
    kept: list[str] = []

    def save_checkpoint(path: Path, summary: dict) -> None:
        # One file per checkpoint (named by its step): a resumed run starts from the one the job row
        # names, whose metrics were written before it, never from a newer file whose steps the events lack.
        step = summary.get("step")
        if type(step) is not int or step < 1:
            raise ValueError("a checkpoint's step must be a whole number from 1")
        key = f"{checkpoints}/checkpoint-{step}.pth"
        store_copy(path, key)
        path.unlink()
        run.reporter.checkpoint({**summary, "key": key})
        kept.append(key)
        while len(kept) > 3:  # the row has moved past it long since
            delete_file(kept.pop(0))

    return resume, save_checkpoint



@contextmanager
def image_cache(run: JobRun, dataset, folder: Path, input_size: int) -> Iterator[tuple[dict, dict]]:
    """The dataset version's decoded-image cache entry at this training size, on this host's disk
    (a cache, never the truth: on S3 set-ups too): what the train step is told of it, and how the
    jail sees it, {"reads": [...]} or {"writes": [...]}. Only this entry is bound, never the
    cache's root (other teams' images): read-only when whole, read-write while the step builds it.
    The entry is kept from eviction while the block runs; least recently used entries past
    IMAGE_CACHE_GB go before and after."""
    root, cap = Path(settings.IMAGE_CACHE_DIR), int(settings.IMAGE_CACHE_GB * 2**30)
    index = hashlib.sha256((folder / "index.json").read_bytes()).hexdigest()
    identity = f"dataset {dataset.id} version {dataset.version} archive {dataset.archive_sha256} index {index}"
    size = imagecache.cache_size(input_size)
    name = f"dataset-{dataset.id}-{size}px-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    imagecache.evict(root, cap)
    try:
        with imagecache.entry_in_use(root, name) as entry:
            request = {"entry": str(entry), "identity": identity}
            if imagecache.check(entry / "data", identity=identity, size=size):
                yield request, {"reads": [entry / "data"]}
            else:
                if os.geteuid() == 0:  # the job's own user builds it (another job's may finish it)
                    os.chmod(entry, 0o777)
                try:
                    yield request, {"writes": [entry]}
                finally:
                    if os.geteuid() == 0:
                        os.chmod(entry, 0o755)
    finally:
        imagecache.evict(root, cap)


def staging(run: JobRun, name: str = "") -> Path:
    """A folder for a download from storage (on local storage nothing is copied there)."""
    folder = run.inputs / name if name else run.inputs
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def staged_model(run: JobRun, artifact: Artifact, *, input_size: int, name: str = "model") -> tuple[dict, Path]:
    """An artifact's files where the jail can read them, and what the step needs to know of it."""
    folder = local_tree(artifact.storage_prefix, staging(run, name))
    return {"format": artifact.format, "folder": str(folder), "primary": artifact.primary,
            "architecture": artifact.architecture, "num_classes": artifact.num_classes, "input_size": input_size,
            "output": artifact.model.output_index}, folder


def input_size(artifact: Artifact) -> list[int]:
    """The [height, width] an artifact takes: its own fixed input size where it has one (a convert
    may have fixed another size than the model's), else the model's preprocessing size."""
    geometry = recipe.input_geometry(artifact.inspection.get("inputs") or [])
    if geometry and geometry["size"]:
        return geometry["size"]
    return list(recipe.complete(artifact.model.preprocessing)["input_size"])


def preprocessing_of(artifact: Artifact) -> dict:
    """The model's preprocessing, at the size this artifact takes."""
    return {**recipe.complete(artifact.model.preprocessing), "input_size": input_size(artifact)}


def takes_images(artifact: Artifact) -> bool:
    """An IR with embedded preprocessing takes u8 NHWC images."""
    return (artifact.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"


def published(run: JobRun, name: str) -> Path:
    """The folder a step made in its work folder, checked to hold nothing but plain files."""
    folder = run.work / name
    checked_tree(folder)
    return folder


# Loading NNCF's quantize kernels compiles them (about 20 s on 2 cores) unless they are built already.
BUILD_KERNELS = "from nncf.torch.quantization.extensions import QuantizedFunctionsCPU as F; F.get('Quantize_forward')"


def nncf_kernels(run: JobRun) -> dict:
    """NNCF's compiled CPU kernels for quantization-aware training, built once per host by a trusted
    process (no job's code runs in it) and copied into the job's own /tmp: a cache the jobs could
    write would let one team's job plant code for the next. The environment that points NNCF at the
    copy; none (the job compiles them itself) when the host cannot build them."""
    # The Docker image builds them at /opt/torch-extensions (TORCH_EXTENSIONS_DIR); elsewhere the data folder.
    cache = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or settings.DATA_DIR / "cache" / "torch-extensions")
    (settings.DATA_DIR / "cache").mkdir(parents=True, exist_ok=True)
    with open(settings.DATA_DIR / "cache" / "torch-extensions.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per host, whichever job asks first
        if not (cache / "built").exists():
            run.reporter.log("Building NNCF's CPU kernels for this worker, once (about 20 s).")
            environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(settings.DATA_DIR / "cache"),
                           "TORCH_EXTENSIONS_DIR": str(cache)}
            built = subprocess.run([sys.executable, "-c", BUILD_KERNELS], env=environment, capture_output=True,
                                   timeout=900, check=False)
            if built.returncode != 0:
                run.reporter.log("NNCF's kernels could not be built here; the job builds or replaces them itself.",
                                 level="warning")
                return {}
            (cache / "built").touch()
    copy = run.jail_tmp / "torch-extensions"
    shutil.copytree(cache, copy)  # file times kept: the copy is up to date, nothing is rebuilt
    if os.geteuid() == 0:
        for path in [copy, *copy.rglob("*")]:  # the loader takes a lock file in its folder
            os.chown(path, run.jail.uid, run.jail.uid, follow_symlinks=False)
    return {"TORCH_EXTENSIONS_DIR": "/tmp/torch-extensions"}
