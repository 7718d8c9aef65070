"""Each kind's parameters are declared once (workers/pipeline/params.py): the serializer, the
guide's table and the pipeline's limits all come from that declaration."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework import serializers

from webapp.celery import QUEUES
from webapp.jobs.kinds import KINDS
from webapp.jobs.management.commands.kind_params import kind_params_markdown
from webapp.jobs.params import serializer_for
from webapp.jobs.services import params_validate
from workers.pipeline import params as p
from workers.pipeline.params import param


@dataclass(frozen=True)
class Sample:
    """A kind's parameters, as a test writes them."""

    artifact: int = param(min=1)
    size: int | None = param(None, min=8, max=64, help="Pixels.")
    ratio: float = param(0.5, min=0, max=1)
    mode: str = param("a", choices=(("a", "A"), ("b", "B")))
    name: str = param("", max_length=5, pattern=r"^[a-z]*$")
    lines: list[str] = param([], max_items=2, item_max_length=3)
    hints: frozenset[str] = param(["x"], choices=("x", "y"))
    points: list[p.MatrixPoint] = param([], max_items=1)


def check(data):
    serializer = serializer_for(Sample)(data=data)
    return serializer.is_valid(), serializer.validated_data if serializer.is_valid() else serializer.errors


def test_it_derives_defaults_and_requires_a_field_without_one():
    ok, errors = check({})
    assert not ok and list(errors) == ["artifact"]
    ok, data = check({"artifact": 3})
    assert ok and data == {"artifact": 3, "size": None, "ratio": 0.5, "mode": "a", "name": "", "lines": [],
                           "hints": ["x"], "points": []}


@pytest.mark.parametrize("field, value", [
    ("size", 7), ("size", 65), ("ratio", 1.5), ("mode", "c"), ("name", "abcdef"), ("name", "A"),
    ("lines", ["a", "b", "c"]), ("lines", ["abcd"]), ("hints", ["z"]),
    ("points", [{"batch": 1, "streams": 1}, {"batch": 2, "streams": 1}]), ("points", [{"batch": 0, "streams": 1}]),
    ("artifact", 0), ("ratio", None),
])
def test_it_refuses_what_the_metadata_forbids(field, value):
    ok, errors = check({"artifact": 1, field: value})
    assert not ok and list(errors) == [field]


def test_a_nullable_field_takes_null_and_help_and_bounds_reach_the_field():
    assert check({"artifact": 1, "size": None})[0]
    size = serializer_for(Sample)().fields["size"]
    assert (size.min_value, size.max_value, size.help_text, size.allow_null) == (8, 64, "Pixels.", True)
    assert dict(serializer_for(Sample)().fields["mode"].choices) == {"a": "A", "b": "B"}


def test_a_kinds_cross_field_rule_and_unknown_keys():
    with pytest.raises(Exception) as refused:
        params_validate("train", {"dataset": 1, "model_name": "m", "epochs": 2, "warmup_epochs": 3})
    assert "params.warmup_epochs" in refused.value.message_dict
    with pytest.raises(Exception) as unknown:  # never dropped silently: it would run something else
        params_validate("probe", {"rounds": 2, "colour": "red"})
    assert "“colour”" in unknown.value.message_dict["params.colour"][0]


def test_every_kind_derives_a_serializer_and_names_its_inputs_among_its_fields():
    for kind in KINDS.values():
        fields = kind.serializer().fields
        assert isinstance(kind.serializer(), serializers.Serializer)
        assert set(kind.datasets + kind.artifacts) <= set(fields), kind.name


def test_the_limits_are_the_pipelines():
    from workers.pipeline.augment import AUGMENTS
    from workers.pipeline.conversion.config import MAX_NAME, OPSETS
    from workers.pipeline.training import OPTIMIZERS, SCHEDULES

    assert set(p.QUEUES + p.GPU_QUEUES) == set(QUEUES) and p.AUGMENTS == AUGMENTS
    fields = KINDS["convert"].serializer().fields
    assert (fields["opset"].min_value, fields["opset"].max_value) == (OPSETS.start, OPSETS.stop - 1)
    assert fields["input_name"].max_length == MAX_NAME
    train = KINDS["train"].serializer().fields
    assert tuple(train["optimizer"].choices) == OPTIMIZERS and tuple(train["schedule"].choices) == SCHEDULES


def test_every_seed_is_one_numpy_and_the_pipeline_take():
    from workers.pipeline.training import SEED_MAX

    fields = {name: kind.serializer().fields for name, kind in KINDS.items()}
    seeds = {name: (f["seed"].min_value, f["seed"].max_value) for name, f in fields.items() if "seed" in f}
    assert seeds == {"train": (0, 2**32 - 1), "quantize": (0, 2**32 - 1)} and SEED_MAX == 2**32 - 1


def test_the_guide_holds_exactly_what_kind_params_prints():
    guide = (Path(__file__).parent.parent / "docs" / "guide.md").read_text()
    assert kind_params_markdown() in guide
