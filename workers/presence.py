"""A worker announces itself: it asks for its own capability report through the broker, then
keeps a heartbeat from its main process (pool processes may be busy with hours-long jobs),
and runs the job reconciler every RECONCILE_SECONDS."""

import logging
import threading

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections

from webapp.celery import QUEUES
from webapp.hosts.services import host_heartbeat, host_stopped
from workers.reconciler import reconcile
from workers.runner import scratch_sweep
from workers.tasks import report_capabilities

log = logging.getLogger(__name__)
_stop = threading.Event()
_announced: list[str] = []  # the node name, once ready


def _queues_of(consumer) -> list[str]:
    return sorted(q.name for q in consumer.task_consumer.queues if q.name in QUEUES)


def _request_report(hostname: str) -> None:
    # worker_direct: exchange C.dq2 with the node name as routing key reaches this worker only.
    report_capabilities.apply_async(exchange="C.dq2", routing_key=hostname)


def _beat(hostname: str, queues: list[str]) -> None:
    since_reconcile = 0.0
    while not _stop.wait(settings.WORKER_HEARTBEAT_SECONDS):
        try:
            close_old_connections()
            if host_heartbeat(hostname=hostname, queues=queues):
                _request_report(hostname)
            since_reconcile += settings.WORKER_HEARTBEAT_SECONDS
            if since_reconcile >= settings.RECONCILE_SECONDS:
                since_reconcile = 0.0
                reconcile()
        except Exception:  # a database or broker hiccup must not kill the worker; the next beat retries
            log.exception("worker heartbeat failed")


@worker_ready.connect
def announce(sender, **kwargs) -> None:
    hostname, queues = sender.hostname, _queues_of(sender)
    _announced.append(hostname)
    host_heartbeat(hostname=hostname, queues=queues, starting=True)
    scratch_sweep()  # what attempts killed with the last worker on this host left
    close_old_connections()
    _request_report(hostname)
    threading.Thread(target=_beat, args=(hostname, queues), name="vintner-heartbeat", daemon=True).start()


@worker_shutdown.connect
def retire(**kwargs) -> None:
    _stop.set()
    try:
        for hostname in _announced:
            close_old_connections()
            host_stopped(hostname=hostname)
    except Exception:
        log.exception("could not mark worker stopped")
