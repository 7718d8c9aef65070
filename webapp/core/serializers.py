"""What every API serializer that reads a body shares."""

from rest_framework import serializers

FORM_KEYS = {"csrfmiddlewaretoken"}  # a browser form's own field, never a client's mistake


def refuse_unknown(data, known) -> None:
    """A 400 naming each key the body has that the serializer does not know: silently dropping
    it would run something other than what the client asked for."""
    if not hasattr(data, "keys"):
        return  # DRF's own "expected a dictionary" answers it
    unknown = sorted(set(data.keys()) - set(known) - FORM_KEYS, key=str)
    if unknown:
        names = ", ".join(sorted(known))
        raise serializers.ValidationError({str(name): [f"Unknown field “{name}”. This takes {names}."] for name in unknown})


class StrictSerializer(serializers.Serializer):
    """A Serializer whose body may hold only its fields."""

    def to_internal_value(self, data):
        refuse_unknown(data, self.fields)
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    def to_internal_value(self, data):
        refuse_unknown(data, self.fields)
        return super().to_internal_value(data)
