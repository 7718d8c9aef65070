"""Pure ML code: no Django, no Celery. Importing it turns OpenVINO/NNCF telemetry off first."""

from workers.pipeline.telemetry import hub_offline, telemetry_opt_out

telemetry_opt_out()
hub_offline()
