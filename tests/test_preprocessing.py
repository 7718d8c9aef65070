"""A model's preprocessing declared in full: checked once, fed the same way by evaluation and by
the downloaded classify.py (RGB and BGR models, logits and probabilities), and metadata.json
carrying all of it and nothing of the server."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from PIL import Image

from tests.fakes import FakeReporter
from tests.helpers import make_artifact, signed_in
from tests.jobs_helpers import make_project
from tests.test_hostile_names import downloaded, stored
from webapp.registry.models import Model
from webapp.registry.services import model_input_from_artifact
from workers.pipeline.augment import val_transform
from workers.pipeline.evaluation import ir_runner
from workers.pipeline.feeding import InputSpec
from workers.pipeline.preprocessing import PreprocessingError, clean, default_preprocessing, fit_picture

LABELS = ["ant", "bee", "cat", "dog"]
RGB_MODEL = {"input_size": [16, 20], "fit": "crop", "crop": 0.8, "resize": "bicubic", "value_range": "0-1",
             "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "color": "RGB", "layout": "NCHW"}
# A Caffe-style model: BGR, 0-255 pixels, mean subtracted only, NHWC, stretched after a centre crop
BGR_MODEL = {"input_size": [16, 16], "fit": "stretch", "crop": 0.9, "resize": "nearest", "value_range": "0-255",
             "mean": [103.9, 116.8, 123.7], "std": [58.0, 57.0, 57.4], "color": "BGR", "layout": "NHWC"}


def spatial_ir(folder: Path, spec: dict, *, softmax: bool) -> list[Path]:
    """A real IR whose 4 scores weigh every pixel and channel differently (a crop, a resize or a
    channel swap changes them), ending in a softmax or not."""
    folder.mkdir()
    height, width = spec["input_size"]
    rng = np.random.default_rng(7)
    nchw = spec["layout"] == "NCHW"
    image = ops.parameter([1, 3, height, width] if nchw else [1, height, width, 3], np.float32, name="x")
    weights = rng.normal(size=(1, 3, height, width) if nchw else (1, height, width, 3)).astype(np.float32) / 20
    pooled = ops.reduce_sum(ops.multiply(image, weights), np.array([2, 3] if nchw else [1, 2]), keep_dims=False)
    scores = ops.matmul(pooled, rng.normal(size=(3, 4)).astype(np.float32), False, False)
    if softmax:
        scores = ops.softmax(scores, 1)
    ov.save_model(ov.Model([scores], [image], "spatial"), folder / "model.xml", compress_to_fp16=False)
    return [folder / "model.xml", folder / "model.bin"]


def picture(path: Path) -> Path:
    """A 37×29 image whose channels and corners all differ."""
    y, x = np.mgrid[0:29, 0:37]
    pixels = np.stack([x * 7 % 256, y * 9 % 256, (x * y) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_the_default_recipe_is_trainings_validation_transform_to_the_pixel():
    rng = np.random.default_rng(0)
    for width, height in ((300, 200), (200, 300), (256, 256), (17, 40)):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for size in ((224, 224), (32, 32), (96, 128)):
            expected = val_transform(size)(image).permute(1, 2, 0).numpy()
            got = np.asarray(fit_picture(image, {**default_preprocessing(), "input_size": list(size)}))
            assert got.shape == expected.shape and (got == expected).all(), (width, height, size)


def test_every_setting_is_checked_and_named():
    with pytest.raises(PreprocessingError) as refused:
        clean({"input_size": [4, 5000], "fit": "zoom", "crop": 1.5, "resize": "lanczos", "value_range": "0-100",
               "mean": [1, 2], "std": [0, 1, 1], "color": "GBR", "layout": "CHW", "gamma": 2})
    assert set(refused.value.errors) == {"preprocessing", "input_size", "fit", "crop", "resize", "value_range",
                                         "mean", "std", "color", "layout"}
    assert "gamma" in refused.value.errors["preprocessing"]
    with pytest.raises(PreprocessingError) as refused:  # 0-255 numbers with a 0-1 range: said, not guessed
        clean({"mean": [123.675, 116.28, 103.53], "std": [58.4, 57.1, 57.4]})
    assert "0–255" in refused.value.errors["value_range"]
    assert clean({"mean": 0.5, "crop": "1"}) == {**default_preprocessing(), "mean": [0.5] * 3, "crop": 1.0}
    assert clean(BGR_MODEL) == BGR_MODEL


@pytest.mark.parametrize("spec, softmax", [(RGB_MODEL, False), (BGR_MODEL, True)], ids=["rgb-logits", "bgr-probabilities"])
def test_classify_py_gives_the_evaluation_paths_scores(spec, softmax, team_a, alice, tmp_path):
    model = Model.objects.create(project=make_project(team_a), name="spatial", labels=LABELS, preprocessing=spec,
                                 created_by=alice)
    ir = spatial_ir(tmp_path / "ir", spec, softmax=softmax)
    artifact = stored(make_artifact(model), [(path, path.name) for path in ir])
    client, folder = signed_in(alice), tmp_path / "deploy"
    downloaded(client, artifact, folder)
    (folder / "classify.py").write_bytes(client.get(f"/artifacts/{artifact.id}/classify.py").content)
    image = picture(tmp_path / "picture.png")

    printed = subprocess.run([sys.executable, "classify.py", str(image)], cwd=folder, capture_output=True, text=True,
                             timeout=120)
    assert printed.returncode == 0, printed.stderr
    # what evaluation and calibration feed the same IR
    scores = ir_runner(ir[0])(InputSpec.of(model.preprocessing).load(image)).reshape(-1).astype(np.float64)
    if softmax:
        assert abs(scores.sum() - 1) < 1e-5  # printed as they are, not put through a second softmax
        expected = scores
    else:
        expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    order = np.argsort(-expected, kind="stable")
    assert max(expected) < 0.99 and min(expected) > 0.001  # the figures tell the inputs apart
    assert printed.stdout == "".join(f"{LABELS[i]}\t{expected[i]:.3f}\n" for i in order)

    metadata = json.loads((folder / "metadata.json").read_text())
    assert {k: metadata["preprocessing"][k] for k in spec} == spec
    assert metadata["preprocessing"]["embedded"] is False and "cut out" in metadata["preprocessing"]["steps"] \
        or "stretched" in metadata["preprocessing"]["steps"]
    text = (folder / "metadata.json").read_text()
    assert str(tmp_path) not in text and "/scratch/" not in text and '"folder"' not in text


def test_metadata_leaves_out_the_jail_paths_stored_by_older_jobs(team_a, alice, tmp_path):
    model = Model.objects.create(project=make_project(team_a), name="older", labels=LABELS[:3], created_by=alice)
    artifact = stored(make_artifact(model, metrics={"conversion": {"folder": "/work/scratch/job-1/ir", "route": "direct"}}),
                      [(path, path.name) for path in spatial_ir(tmp_path / "ir", {**RGB_MODEL, "input_size": [16, 16]},
                                                                softmax=False)])
    downloaded(signed_in(alice), artifact, tmp_path / "out")
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert metadata["metrics"] == {"conversion": {"route": "direct"}}
    assert metadata["preprocessing"]["crop"] == 0.875 and metadata["preprocessing"]["fit"] == "crop"


def test_an_input_of_unknown_size_is_said_and_a_fixed_one_is_taken(team_a, alice):
    model = Model.objects.create(project=make_project(team_a), name="third-party", created_by=alice)
    artifact = make_artifact(model)
    artifact.inspection["inputs"][0]["shape"] = [1, 299, 299, 3]
    artifact.save(update_fields=["inspection"])
    line, level = model_input_from_artifact(artifact=artifact)
    model.refresh_from_db()
    assert level == "info" and "299×299 NHWC" in line
    assert (model.preprocessing["input_size"], model.preprocessing["layout"]) == ([299, 299], "NHWC")

    dynamic = make_artifact(model)
    dynamic.inspection["inputs"][0]["shape"] = ["?", 3, "?", "?"]
    dynamic.save(update_fields=["inspection"])
    line, level = model_input_from_artifact(artifact=dynamic)
    assert level == "warning" and "no fixed height and width" in line and "299×299" in line
    page = signed_in(alice).get(f"/models/{model.id}/").content.decode()
    assert 'data-testid="input-size-note"' in page and "no fixed height and width" in page


@pytest.mark.parametrize("resize", ["bilinear", "bicubic", "nearest"])
def test_the_embedded_steps_follow_the_model_and_match_the_equivalence_checks_reference(resize):
    from workers.kinds.convert import _embedded
    from workers.pipeline.conversion.config import ConvertConfig
    from workers.pipeline.conversion.equivalence import _preprocessed_cases
    from workers.pipeline.conversion.preprocessing import embed, preprocessing_spec

    spec = preprocessing_spec(ConvertConfig(input_size=(16, 16), preprocessing=_embedded({**BGR_MODEL, "resize": resize}, (16, 16))))
    assert (spec["resize"], spec["value_range"], spec["model_color"]) == (resize, "0-255", "BGR")
    image = ops.parameter([1, 3, 16, 16], np.float32, name="x")
    identity = ov.Model([ops.multiply(image, np.float32(1))], [image], "identity")
    compiled = ov.Core().compile_model(embed(identity, spec, "NCHW", FakeReporter()), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), rng.integers(0, 256, (29, 43, 3), dtype=np.uint8)]
    for case in _preprocessed_cases(pictures, spec, "dynamic", "NCHW"):
        assert np.abs(compiled(case.ir)[0] - case.network).max() < 1e-4
    # at the network's size it is the model's own recipe: BGR, 0-255, (x - mean) / std
    expected = (pictures[0][..., ::-1].astype(np.float32) - BGR_MODEL["mean"]) / BGR_MODEL["std"]
    assert np.abs(compiled(pictures[0][None])[0] - expected.transpose(2, 0, 1)).max() < 1e-4
