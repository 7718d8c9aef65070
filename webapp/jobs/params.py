"""A job kind's REST serializer, derived from its parameters dataclass (workers/pipeline/params.py).

Written here rather than taken from djangorestframework-dataclasses: the bounds live in field
metadata, which that library does not read, and the job row stores plain JSON, not dataclass
instances; what is left is one mapping from a field's type and metadata to a DRF field."""

import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields, is_dataclass

from rest_framework import serializers

from webapp.core.serializers import StrictSerializer


def serializer_for(params: type, *, check: Callable[[dict], dict] | None = None) -> type[serializers.Serializer]:
    """A Serializer with one field per dataclass field; `check` (the kind's cross-field rules)
    runs on the validated dict and raises serializers.ValidationError({field: message})."""
    hints = typing.get_type_hints(params)
    attrs: dict = {name: param_field(hints[name], spec) for name, spec in ((f.name, f) for f in fields(params))}
    if check is not None:
        attrs["validate"] = lambda self, data: check(data)
    attrs["__doc__"] = params.__doc__
    return type(params.__name__, (StrictSerializer,), attrs)  # a key it does not know is a 400 naming it


def param_field(kind, spec) -> serializers.Field:
    """The DRF field for one dataclass field: its type says which, its metadata the limits."""
    meta, nullable = spec.metadata, False
    if isinstance(kind, types.UnionType) and type(None) in kind.__args__:
        kind, nullable = next(arg for arg in kind.__args__ if arg is not type(None)), True
    options: dict = {"help_text": meta.get("help") or None}
    if spec.default is not MISSING:
        options.update(required=False, default=spec.default)
    elif spec.default_factory is not MISSING:
        options.update(required=False, default=spec.default_factory)
    if nullable:
        options["allow_null"] = True
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    choices = _choices(meta["choices"]) if "choices" in meta else None
    if origin in (frozenset, set):  # several of the choices
        return serializers.MultipleChoiceField(choices=choices, **options)
    if origin is list and is_dataclass(args[0]):
        return serializer_for(args[0])(many=True, max_length=meta.get("max_items"), **options)
    if origin is list:
        child = serializers.CharField(max_length=meta.get("item_max_length"), allow_blank=True)
        return serializers.ListField(child=child, max_length=meta.get("max_items"), **options)
    if choices is not None:
        return serializers.ChoiceField(choices=choices, allow_blank=any(value == "" for value, _ in choices), **options)
    bounds = {"min_value": meta.get("min"), "max_value": meta.get("max")}
    if kind is bool:
        return serializers.BooleanField(**options)
    if kind is int:
        return serializers.IntegerField(**bounds, **options)
    if kind is float:
        return serializers.FloatField(**bounds, **options)
    if kind is str:
        text = {"max_length": meta.get("max_length"), "allow_blank": spec.default == ""}
        if "pattern" in meta:
            words = {"error_messages": {"invalid": meta["pattern_words"]}} if "pattern_words" in meta else {}
            return serializers.RegexField(meta["pattern"], **text, **options, **words)
        return serializers.CharField(**text, **options)
    raise TypeError(f"{spec.name}: no serializer field for {kind!r}")


def _choices(choices) -> list[tuple]:
    """(value, label) pairs; a bare value is its own label."""
    return [choice if isinstance(choice, tuple) else (choice, choice) for choice in choices]


def param_rows(params: type) -> list[dict]:
    """Each field's name, type, default and limits in words: the guide's table (kind_params)."""
    rows = []
    for name, field in serializer_for(params)().fields.items():
        limits = []
        if getattr(field, "choices", None):
            limits.append(", ".join(f"`{value}`" if value != "" else "`\"\"`" for value in field.choices))
        low, high = getattr(field, "min_value", None), getattr(field, "max_value", None)
        if low is not None or high is not None:
            limits.append(f"{_number(low) if low is not None else '…'} to {_number(high) if high is not None else '…'}")
        if isinstance(field, serializers.ListSerializer):
            limits.append(f"at most {field.max_length} entries" if field.max_length else "")
        elif getattr(field, "max_length", None):
            limits.append(f"at most {field.max_length} {'entries' if isinstance(field, serializers.ListField) else 'characters'}")
        rows.append({"name": name, "type": _type_word(field), "default": _default(field),
                     "limits": "; ".join(word for word in limits if word), "help": field.help_text or ""})
    return rows


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value:,}".replace(",", " ")


def _type_word(field) -> str:
    if isinstance(field, serializers.ListSerializer):
        return "list of {" + ", ".join(field.child.fields) + "}"
    words = {serializers.BooleanField: "boolean", serializers.IntegerField: "integer", serializers.FloatField: "number",
             serializers.MultipleChoiceField: "list of choices", serializers.ChoiceField: "choice",
             serializers.ListField: "list of text", serializers.CharField: "text"}
    word = next(word for cls, word in words.items() if isinstance(field, cls))
    return f"{word} or null" if field.allow_null else word


def _default(field) -> str:
    if field.required:
        return "required"
    default = field.get_default()
    if default is None:
        return "null"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, (list, set, frozenset)):
        return "[" + ", ".join(f"`{value}`" for value in default) + "]" if default else "[]"
    if default == "":
        return '`""`'
    return f"`{_number(default) if isinstance(default, (int, float)) else default}`"
