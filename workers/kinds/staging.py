"""What the kinds share on the worker: folders to stage inputs in, an artifact staged for the
jail, a training loop's checkpoints in storage, and a published folder checked to hold plain files."""

from pathlib import Path

from webapp.core.files import delete_file, local_file, local_tree, store_copy
from webapp.registry.models import Artifact
from workers.jail import checked_tree
from workers.runner import JobRun


def epoch_checkpoints(run: JobRun) -> tuple:
    """A training loop's checkpoints in storage under jobs/<id>/: the file to resume from (a lost
    worker's last epoch), and the callback that stores each epoch's as the jailed step hands it over."""
    checkpoints = f"jobs/{run.job.id}"
    resume = local_file(run.checkpoint["key"], staging(run, "resume")) if run.checkpoint else None

    def save_checkpoint(path: Path, summary: dict) -> None:
        # One file per epoch: a resumed run starts from the epoch the job row names, whose metrics
        # were written before it, never from a newer file whose epoch the events lack.
        epoch = summary.get("epoch")
        if type(epoch) is not int or epoch < 1:
            raise ValueError("a checkpoint's epoch must be a whole number from 1")
        store_copy(path, f"{checkpoints}/checkpoint-{epoch}.pth")
        path.unlink()
        run.reporter.checkpoint({**summary, "key": f"{checkpoints}/checkpoint-{epoch}.pth"})
        if epoch > 3:  # the row has moved past it long since
            delete_file(f"{checkpoints}/checkpoint-{epoch - 3}.pth")

    return resume, save_checkpoint



def staging(run: JobRun, name: str = "") -> Path:
    """A folder for a download from storage (on local storage nothing is copied there)."""
    folder = run.inputs / name if name else run.inputs
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def staged_model(run: JobRun, artifact: Artifact, *, input_size: int, name: str = "model") -> tuple[dict, Path]:
    """An artifact's files where the jail can read them, and what the step needs to know of it."""
    folder = local_tree(artifact.storage_prefix, staging(run, name))
    return {"format": artifact.format, "folder": str(folder), "primary": artifact.primary,
            "architecture": artifact.architecture, "num_classes": artifact.num_classes, "input_size": input_size}, folder


def takes_images(artifact: Artifact) -> bool:
    """An IR with embedded preprocessing takes u8 NHWC images."""
    return (artifact.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"


def published(run: JobRun, name: str) -> Path:
    """The folder a step made in its work folder, checked to hold nothing but plain files."""
    folder = run.work / name
    checked_tree(folder)
    return folder
