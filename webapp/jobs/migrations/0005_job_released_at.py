from django.db import migrations, models
from django.db.models import F


def release_active_jobs(apps, schema_editor):
    """Jobs queued or running before turns existed were all sent to the broker: they hold their slots."""
    Job = apps.get_model("jobs", "Job")
    Job.objects.filter(state__in=("queued", "running")).update(released_at=F("created_at"))


class Migration(migrations.Migration):
    """Job.released_at: when a job took one of its team's slots on its queue (null: it waits its turn)."""

    dependencies = [
        ("jobs", "0004_remove_job_inputs"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="released_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["queue", "state", "released_at"], name="job_turns"),
        ),
        migrations.RunPython(release_active_jobs, migrations.RunPython.noop),
    ]
