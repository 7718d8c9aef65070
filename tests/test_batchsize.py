"""The batch-size suggestion (workers/pipeline/batchsize.py): the table of activations holds what
autograd really saves, the batch is the largest the estimate lets fit, the learning rate follows
its rule, and the train form shows it for the smallest GPU of the train workers (or says CPU)."""

import pytest
from django.utils import timezone

from tests.helpers import signed_in
from tests.jobs_helpers import make_project
from webapp.hosts.models import WorkerHost
from workers.pipeline import batchsize
from workers.pipeline.batchsize import ACTIVATIONS, MEASURED_AT, measure_activations, suggest

GIB = 2**30


@pytest.mark.parametrize("architecture", ["small_cnn", "resnet18"])
def test_the_table_holds_what_autograd_saves_per_image(architecture):
    assert measure_activations(architecture, MEASURED_AT) == pytest.approx(ACTIVATIONS[architecture], rel=0.05)


def test_the_suggested_batch_is_the_largest_multiple_of_8_the_estimate_fits():
    chosen = suggest("resnet50", 224, "adamw", 16 * GIB, "Tesla T4")
    budget = 16 * GIB * batchsize.MEMORY_SHARE - batchsize.OVERHEAD_BYTES - batchsize.fixed_bytes("resnet50", "adamw")
    per_image = batchsize.per_image_bytes("resnet50", 224)
    assert chosen.batch % 8 == 0 and chosen.batch * per_image <= budget < (chosen.batch + 8) * per_image
    assert 64 <= chosen.batch <= 512  # a 16 GB card trains resnet50 at a few hundred images in mixed precision
    assert chosen.rule == "square root" and chosen.lr == pytest.approx(1e-3 * (chosen.batch / 32) ** 0.5)
    assert f"About {chosen.batch} images of 224 px fit the 16 GiB of Tesla T4 with resnet50" in chosen.sentence
    # twice the pixels per side, about a quarter of the batch; SGD scales its rate linearly
    large = suggest("resnet50", 448, "sgd", 16 * GIB, "Tesla T4")
    assert large.batch < chosen.batch / 3 and large.rule == "linear" and large.lr == pytest.approx(0.05 * large.batch / 32)


def test_a_big_gpu_is_capped_at_the_largest_batch_and_a_small_one_says_it_hardly_fits():
    assert suggest("small_cnn", 32, "adamw", 141 * GIB, "NVIDIA H200").batch == batchsize.MAX_BATCH
    tight = suggest("convnext_tiny", 1024, "adamw", 2 * GIB, "a laptop GPU")
    assert tight.batch == 1 and "hardly fits" in tight.sentence


def test_on_cpu_only_it_says_so_and_keeps_a_modest_batch():
    chosen = suggest("resnet18", 224, "adamw", None)
    assert chosen.batch == 32 and chosen.lr == 1e-3 and chosen.sentence.startswith("No train worker has a GPU")


def host(name: str, queues: list[str], gpus: list[dict]) -> WorkerHost:
    return WorkerHost.objects.create(hostname=name, queues=queues, last_seen=timezone.now(),
                                     capabilities={"torch": {"cuda_gpus": gpus}})


@pytest.mark.django_db
def test_the_train_form_suggests_a_batch_for_the_smallest_train_gpu(alice, team_a):
    WorkerHost.objects.all().delete()
    project = make_project(team_a)
    client = signed_in(alice)
    page = client.get(f"/projects/{project.id}/train/").content.decode()
    assert "No train worker has a GPU, so this trains on CPU: a batch of 32" in page

    host("gpu-big@a", ["train"], [{"name": "NVIDIA H200", "memory_bytes": 141 * GIB}])
    host("gpu-small@b", ["train"], [{"name": "NVIDIA L4", "memory_bytes": 24 * GIB}])
    host("optimizer@c", ["optimize"], [{"name": "Tiny GPU", "memory_bytes": 2 * GIB}])  # takes no train jobs
    gone = host("gone@d", ["train"], [{"name": "Old GPU", "memory_bytes": 4 * GIB}])
    WorkerHost.objects.filter(id=gone.id).update(stopped_at=timezone.now())  # offline: takes nothing
    page = client.get(f"/projects/{project.id}/train/?architecture=resnet50&input_size=160").content.decode()
    expected = suggest("resnet50", 160, "adamw", 24 * GIB, "NVIDIA L4 (gpu-small@b)")
    assert expected.sentence in page
    assert f'data-batch="{expected.batch}"' in page and f"Use batch {expected.batch}, lr {expected.lr:.3g}" in page
