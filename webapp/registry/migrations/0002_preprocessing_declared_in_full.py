"""Every model's preprocessing holds every setting: the sizing rule (fit, crop, resize) and the
value range that evaluation always used, written out, so each reader sees the whole recipe."""

from django.db import migrations

# As they were when this migration was written (workers/pipeline/preprocessing.py DEFAULTS): what
# evaluation, calibration and classify.py did before these settings existed.
ADDED = {"fit": "crop", "crop": 0.875, "resize": "bilinear", "value_range": "0-1"}


def declare_in_full(apps, schema_editor):
    Model = apps.get_model("registry", "Model")
    for model in Model.objects.only("id", "preprocessing").iterator():
        stored = model.preprocessing if isinstance(model.preprocessing, dict) else {}
        missing = {key: value for key, value in ADDED.items() if key not in stored}
        if missing:
            Model.objects.filter(id=model.id).update(preprocessing={**stored, **missing})


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]
    operations = [migrations.RunPython(declare_in_full, migrations.RunPython.noop)]
