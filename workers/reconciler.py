"""Recovers what faults leave behind, from every worker's main process, one worker at a time:
jobs whose worker was lost, cancelled jobs that would not stop, queued jobs whose broker
message is gone (a Redis restart without its data), and waiting jobs whose team has a slot free.
Every CLEANUP_SECONDS it also sweeps failed imports past their expiry and files whose rows are gone."""

import json
import logging
from datetime import timedelta

import redis
from django.conf import settings

from webapp.celery import QUEUES
from webapp.core.sweep import storage_sweep
from webapp.jobs import services
from webapp.projects.deletion import orphan_files_sweep
from webapp.projects.failed_imports import failed_imports_sweep

log = logging.getLogger(__name__)

LOCK_KEY = "vintner:reconciler"
CLEANUP_KEY = "vintner:cleanup"  # set while the last sweep is recent enough
# kombu's Redis transport keeps priority levels in sibling lists: "<queue>\x06\x16<priority>".
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def task_ids_in_broker(client: redis.Redis) -> set[str]:
    """Ids of every task message waiting in our queues or delivered but not yet acknowledged."""
    raw: list[bytes] = []
    for queue in QUEUES:
        for suffix in PRIORITY_SUFFIXES:
            raw += client.lrange(queue + suffix, 0, -1)
    payloads = [json.loads(message) for message in raw]
    # Unacknowledged deliveries are stored as [payload, exchange, routing_key].
    payloads += [json.loads(entry)[0] for entry in client.hvals("unacked")]
    return {payload["headers"]["id"] for payload in payloads if "id" in payload.get("headers", {})}


def reconcile() -> dict[str, list]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    if not client.set(LOCK_KEY, "1", nx=True, ex=max(settings.RECONCILE_SECONDS, 5)):
        return {}
    try:
        done = {
            "recovered": services.jobs_recover_lost(),
            "hard_stopped": services.jobs_hard_stop(),
            "requeued": services.jobs_requeue_lost_messages(queued_task_ids=task_ids_in_broker(client)),
            # a release missed (a process that died between a job's end and its release)
            "released": [job_id for queue in QUEUES for job_id in services.jobs_release(queue=queue)],
        }
        if client.set(CLEANUP_KEY, "1", nx=True, ex=settings.CLEANUP_SECONDS):
            done.update(failed_imports_swept=failed_imports_sweep(), orphans_swept=orphan_files_sweep(),
                        storage_swept=[f"{what}: {count}" for what, count in storage_sweep(
                            grace=timedelta(seconds=settings.SWEEP_GRACE_SECONDS)).items() if count])
    finally:
        client.delete(LOCK_KEY)
    if any(done.values()):
        log.warning("reconciler: %s", done)
    return done
