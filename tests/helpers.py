"""Small helpers shared by integration tests: signed-in clients, finished uploads, and the rows of a
3-colour classifier (dataset, model, artifacts) made directly in the database for the page tests."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.db import connection
from django.test import Client
from django.utils import timezone

from webapp.datasets.models import Dataset, DatasetItem, Labelling
from webapp.projects.models import Project
from webapp.registry.models import Artifact, Model, Origin
from webapp.uploads import services as uploads
from webapp.uploads.models import Upload

COLOURS = ["blue", "green", "red"]
SMALL = {"input_size": [16, 16], "layout": "NCHW", "color": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def uploaded(user, project: Project, path: Path) -> Upload:
    """A finished upload, sent through the same service the tus endpoint calls."""
    data = path.read_bytes()
    upload = uploads.upload_create(team=project.team, user=user, filename=path.name, length=len(data), metadata={})
    return uploads.upload_append(upload=upload, offset=0, body=io.BytesIO(data), length=len(data))


def make_dataset(project: Project, classes=COLOURS, *, name: str = "colours", train: int = 12, val: int = 3) -> Dataset:
    """A ready dataset (imported_at set) with `train` and `val` items per class."""
    dataset = Dataset.objects.create(project=project, name=name, archive_name=f"{name}.zip", archive_sha256="0" * 64,
                                     imported_at=timezone.now(), classes=list(classes),
                                     image_count=len(classes) * (train + val))
    items, index = [], 0
    for label in classes:
        for split, count in (("train", train), ("val", val)):
            for _ in range(count):
                items.append(DatasetItem(dataset=dataset, index=index, path=f"{split}/{label}/{index}.png",
                                         thumb=f"thumbs/{index}.jpg", label=label, split=split, width=16, height=16,
                                         mode="RGB", format="PNG"))
                index += 1
    DatasetItem.objects.bulk_create(items)
    return dataset


def make_unlabelled_dataset(project: Project, *, name: str = "photos", images: int = 20) -> Dataset:
    """A ready unlabelled dataset: `images` items without a label, all in the train split."""
    dataset = Dataset.objects.create(project=project, name=name, archive_name=f"{name}.zip", archive_sha256="0" * 64,
                                     imported_at=timezone.now(), labelling=Labelling.UNLABELLED, image_count=images,
                                     report={"layout": "unlabelled", "images": images, "classes": [],
                                             "split": {"source": "none"}, "warnings": []})
    DatasetItem.objects.bulk_create(
        DatasetItem(dataset=dataset, index=index, path=f"train/{index}.png", thumb=f"thumbs/{index}.jpg", label="",
                    split="train", width=32, height=40, mode="RGB", format="PNG")
        for index in range(images))
    return dataset


def make_model(project: Project, user) -> Model:
    """The model “colours”: the classes of make_dataset's default, 16×16 inputs."""
    return Model.objects.create(project=project, name="colours", labels=COLOURS, preprocessing=SMALL, created_by=user)


def make_artifact(model: Model, *, fmt="openvino_ir", precision="fp32", origin=Origin.CONVERTED, parent=None,
                  metrics=None, job=None) -> Artifact:
    """A ready artifact of a 3-class classifier taking [1, 3, 16, 16]."""
    ir = fmt == "openvino_ir"
    files = ([{"name": "model.xml", "size": 2000, "sha256": "1" * 64}, {"name": "model.bin", "size": 9000, "sha256": "2" * 64}]
             if ir else [{"name": "model.pth", "size": 12000, "sha256": "3" * 64}])
    inspection = {"inputs": [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "f32"}],
                  "outputs": [{"name": "logits", "shape": [1, 3], "dtype": "f32"}], "precision": precision}
    return Artifact.objects.create(
        model=model, origin=origin, format=fmt, precision=precision, parent=parent, job=job,
        architecture="small_cnn" if fmt == "state_dict" else "", num_classes=3, ready_at=timezone.now(), files=files,
        primary=files[0]["name"], sha256=files[0]["sha256"], size_bytes=sum(f["size"] for f in files),
        inspection=inspection, metrics=metrics or {},
    )


def at_once(count: int, call) -> list:
    """`call(i)` in `count` threads released together; each result, or the exception it raised."""
    start = threading.Barrier(count)

    def one(index: int):
        start.wait()
        try:
            return call(index)
        except Exception as exc:  # the answer under test
            return exc
        finally:
            connection.close()  # each thread's own connection

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))
