"""Per-team storage quota: uploads in flight, datasets and models (job outputs included) together.

What a team uses is read off its rows (an upload's declared length, a dataset's or artifact's
size), so deleting or expiring a row releases its bytes with nothing to keep in step. What races
is check-then-write: two uploads both seeing room for one. So every write that adds bytes checks
and writes inside `quota_reserved`, which holds the team's row locked (PostgreSQL: SELECT … FOR
UPDATE; SQLite: the write lock its IMMEDIATE transactions take) until the row that uses the bytes
is committed: the next reservation of the same team counts it.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from webapp.teams.models import Team


class QuotaExceeded(Exception):
    pass


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def team_quota_bytes(team: Team) -> int:
    return (team.storage_quota_gb or settings.TEAM_QUOTA_GB) * 2**30


def team_bytes_used(team: Team) -> int:
    from webapp.datasets.models import Dataset
    from webapp.registry.models import Artifact
    from webapp.uploads.models import Upload

    uploads = Upload.objects.filter(team=team).aggregate(total=Sum("length"))["total"] or 0
    datasets = Dataset.objects.filter(project__team=team).aggregate(total=Sum("size_bytes"))["total"] or 0
    artifacts = Artifact.objects.filter(model__project__team=team).aggregate(total=Sum("size_bytes"))["total"] or 0
    return uploads + datasets + artifacts


def quota_left(team: Team) -> int:
    return max(team_quota_bytes(team) - team_bytes_used(team), 0)


def quota_check(team: Team, extra: int) -> None:
    """Refuse `extra` more bytes if they do not fit. Alone it only advises (a form, a job's
    estimate); a write that adds bytes goes through quota_reserved."""
    quota, used = team_quota_bytes(team), team_bytes_used(team)
    if used + extra > quota:
        raise QuotaExceeded(
            f"This needs {gib(extra)} but team “{team.name}” has {gib(max(quota - used, 0))} of its "
            f"{gib(quota)} storage quota left. Delete datasets or models you no longer need, or ask "
            "an administrator to raise the quota."
        )


@contextmanager
def quota_reserved(team_id: int, extra: int, *, releasing: int = 0) -> Iterator[Team]:
    """A transaction holding the team's row locked, entered only if `extra` more bytes fit (less
    `releasing`, bytes the same step frees: an archive its dataset replaces). Write the row that
    uses the bytes inside it; QuotaExceeded, and nothing written, if they do not fit."""
    with transaction.atomic():
        team = Team.objects.select_for_update().get(id=team_id)
        if extra > releasing:  # a step that frees more than it adds always fits
            quota_check(team, extra - releasing)
        yield team
