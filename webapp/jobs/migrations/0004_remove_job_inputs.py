from django.db import migrations, models


class Migration(migrations.Migration):
    """Job.inputs is gone: what a job reads is in JobInput (0003 moved it there)."""

    dependencies = [
        ('jobs', '0003_job_inputs_to_rows'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='job',
            name='inputs',
        ),
    ]
