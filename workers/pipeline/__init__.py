"""Pure ML code: no Django, no Celery. Importing it turns OpenVINO/NNCF telemetry off first."""

from workers.pipeline.telemetry import telemetry_opt_out

telemetry_opt_out()
