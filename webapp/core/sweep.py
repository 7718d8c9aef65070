"""Removes what killed attempts left in storage: objects no row refers to (a publish that never
committed, a failed import's half-sent files, a finished job's checkpoints), multipart uploads
never completed, and artifact rows a killed publish left unfinished. None of it is in any team's
quota (quota sums rows), so nobody is charged for it while it waits.

Only what is older than a grace period goes: a publish in flight writes its objects before its
row commits, and must not lose them to a sweep that looks in between."""

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from webapp.core import files
from webapp.datasets.models import Dataset
from webapp.jobs.models import ACTIVE_STATES, Job
from webapp.registry.models import Artifact, Origin
from webapp.uploads.models import Upload

log = logging.getLogger(__name__)


def _live_ids() -> dict[str, set[str]]:
    """Per top-level folder of storage, the ids whose objects a row still needs."""
    settled = Q(job__isnull=True) | Q(job__state__in=ACTIVE_STATES)
    artifacts = Artifact.objects.filter(Q(ready_at__isnull=False) | settled)
    datasets = Dataset.objects.filter(Q(imported_at__isnull=False) | Q(import_job__state__in=ACTIVE_STATES))
    ids = {
        "artifacts": artifacts.values_list("id", flat=True),
        "datasets": datasets.values_list("id", flat=True),
        "uploads": Upload.objects.values_list("id", flat=True),
        "jobs": Job.objects.filter(state__in=ACTIVE_STATES).values_list("id", flat=True),  # checkpoints
    }
    return {folder: {str(i) for i in values} for folder, values in ids.items()}


def storage_sweep(*, grace: timedelta) -> dict[str, int]:
    """One pass over storage; returns what it removed."""
    cutoff = timezone.now() - grace
    # Artifacts a job was publishing when it was killed: no bytes, no use, a "failed" line on the model page.
    unfinished = Artifact.objects.filter(ready_at__isnull=True, job__isnull=False, created_at__lt=cutoff) \
        .exclude(origin=Origin.UPLOADED).exclude(job__state__in=ACTIVE_STATES)
    rows = 0
    for artifact in unfinished:
        prefix = artifact.storage_prefix
        artifact.delete()
        files.delete_tree(prefix)
        rows += 1
    live = _live_ids()
    objects = 0
    for key, written in list(files.listing()):
        folder, _, rest = key.partition("/")
        name = rest.split("/", 1)[0]
        if folder in live and name not in live[folder] and written < cutoff:
            files.delete_file(key)
            objects += 1
    swept = {"rows": rows, "objects": objects, "unfinished_uploads": files.abort_unfinished_uploads(cutoff)}
    if any(swept.values()):
        log.warning("storage sweep: %s", swept)
    return swept
