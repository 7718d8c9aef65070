"""The probe job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.probe`)."""

from workers.runner import JobRun


def perform(run: JobRun) -> dict:
    """Measure this worker's matmul throughput."""
    config = {name: run.params[name] for name in ("rounds", "seconds_per_round", "matrix_size")}
    return run.jailed(run.step, {"config": config, "resume": run.checkpoint}, reads=[],
                      on_checkpoint=run.reporter.checkpoint)
