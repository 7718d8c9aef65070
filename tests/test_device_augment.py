"""Augmentation on the device (workers/pipeline/device_augment.py), checked by geometry on images
whose pixels say where they came from: crops land where their boxes say, flips mirror, every
image of a batch gets its own crop, the same step draws the same, the presets keep their meaning."""

import pytest
import torch

from workers.pipeline.device_augment import PRESETS, DeviceAugment

CPU = torch.device("cpu")
SOURCE, SIZE = 64, 32  # the cached square's side, the training input size


def gradient(n: int) -> torch.Tensor:
    """uint8 [n, 3, SOURCE, SOURCE]: red = 4 * column, green = 4 * row, blue 128."""
    steps = torch.arange(SOURCE, dtype=torch.uint8) * 4
    image = torch.stack([steps.view(1, -1).expand(SOURCE, SOURCE), steps.view(-1, 1).expand(SOURCE, SOURCE),
                         torch.full((SOURCE, SOURCE), 128, dtype=torch.uint8)])
    return image.expand(n, 3, SOURCE, SOURCE).contiguous()


def augment(preset: str, *, flip: bool = False, seed: int = 0) -> DeviceAugment:
    # mean 0, std 1/255: the output is in pixel values, so positions can be read off it
    return DeviceAugment(preset, SIZE, (0.0, 0.0, 0.0), (1 / 255,) * 3, flip=flip, seed=seed, device=CPU)


def test_a_random_resized_crop_lands_where_its_box_says():
    light, n, step = augment("light"), 8, 3
    out = light.train(gradient(n), step)
    boxes = light._boxes(n, PRESETS["light"].smallest, light.generator(step))
    centres = (torch.arange(SIZE, dtype=torch.float64) + 0.5) / SIZE - 0.5  # output pixel centres, -0.5..0.5
    for i, (cx, cy, width, height) in enumerate(boxes.tolist()):
        # a source pixel's value is 4 * its index; pixel centres sit at index + 0.5
        columns = 4 * (SOURCE * (cx + width * centres) - 0.5)
        rows = 4 * (SOURCE * (cy + height * centres) - 0.5)
        inside = (columns >= 0) & (columns <= 4 * (SOURCE - 1))  # past the last centre the border repeats
        assert torch.allclose(out[i, 0, 0][inside].double(), columns[inside], atol=0.05), i
        inside = (rows >= 0) & (rows <= 4 * (SOURCE - 1))
        assert torch.allclose(out[i, 1, :, 0][inside].double(), rows[inside], atol=0.05), i
        assert 0.6 - 1e-9 <= width * height and width <= 1 and height <= 1
    assert torch.allclose(out[:, 2], torch.tensor(128.0))


def test_every_image_of_a_batch_gets_its_own_crop_and_the_same_step_the_same():
    standard = augment("standard")
    out = standard.train(gradient(6), step=0)
    firsts = {round(value, 3) for value in out[:, 0, 0, 0].tolist()}  # where each crop starts
    assert len(firsts) == 6
    assert torch.equal(out, standard.train(gradient(6), step=0))
    assert torch.equal(out, augment("standard").train(gradient(6), step=0))  # a resumed run: the same images
    assert not torch.equal(out, standard.train(gradient(6), step=1))
    assert not torch.equal(out, augment("standard", seed=1).train(gradient(6), step=0))


@pytest.mark.parametrize("preset", ["none", "light", "standard", "strong"])
def test_flips_mirror_some_images_and_only_when_asked(preset):
    def mirrored(flip: bool) -> list[bool]:
        out = augment(preset, flip=flip).train(gradient(16), step=5)
        kept = ~(out == 0).all(1)  # "strong" erases rectangles to 0 (blue is never 0 otherwise)
        red, half = out[:, 0] * kept, SIZE // 2
        means = [red[:, :, part].sum((1, 2)) / kept[:, :, part].sum((1, 2)) for part in (slice(0, half), slice(half, None))]
        return (means[0] > means[1]).tolist()

    assert not any(mirrored(False))  # red grows to the right, whatever else the preset does
    flipped = mirrored(True)
    assert 0 < sum(flipped) < 16


def test_no_augment_is_the_centre_crop_and_a_flip_mirrors_it_exactly():
    images = gradient(16)
    centre = images[:, :, 16:48, 16:48].float()
    assert torch.equal(augment("none").train(images, step=0), centre)
    assert torch.equal(augment("none").val(images), centre)
    out = augment("none", flip=True).train(images, step=2)
    flipped = [torch.equal(o, c.flip(2)) for o, c in zip(out, centre)]
    assert all(flipped[i] or torch.equal(out[i], centre[i]) for i in range(16)) and 0 < sum(flipped) < 16


def test_jitter_changes_each_images_colours_within_range():
    flat = torch.full((8, 3, SOURCE, SOURCE), 100, dtype=torch.uint8)
    flat[:, 0] = 180
    light, standard = augment("light").train(flat, step=0), augment("standard").train(flat, step=0)
    assert torch.allclose(light[:, 0], torch.tensor(180.0)) and torch.allclose(light[:, 1], torch.tensor(100.0))
    assert standard.min() >= 0 and standard.max() <= 255
    means = standard.mean((2, 3))
    assert len({round(v, 2) for v in means[:, 0].tolist()}) == 8  # every image its own factors
    assert torch.all((means[:, 0] - means[:, 1]).abs() > 1)  # colours change, never to gray


def test_strong_erases_a_rectangle_to_the_mean_colour_in_some_images():
    mean = (0.5, 0.5, 0.5)
    strong = DeviceAugment("strong", SIZE, mean, (0.25,) * 3, flip=False, seed=0, device=CPU)
    out = strong.train(torch.full((64, 3, SOURCE, SOURCE), 30, dtype=torch.uint8), step=0)
    zero = (out == 0).all(1)  # [n, h, w]: erased pixels (an unerased pixel is far from the mean)
    erased = zero.flatten(1).any(1)
    assert 4 <= int(erased.sum()) <= 32  # p = 0.25 of 64
    for mask in zero[erased]:
        rows, columns = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert int(mask.sum()) == len(rows) * len(columns)  # one filled rectangle
        assert 0.02 * SIZE * SIZE * 0.5 <= int(mask.sum()) <= 0.33 * SIZE * SIZE * 1.5
    assert PRESETS["strong"].smallest == 0.08 and PRESETS["strong"].jitter > PRESETS["standard"].jitter
