"""Per-team storage quota: uploads in flight, datasets and models together."""

from django.conf import settings
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
    quota, used = team_quota_bytes(team), team_bytes_used(team)
    if used + extra > quota:
        raise QuotaExceeded(
            f"This needs {gib(extra)} but team “{team.name}” has {gib(max(quota - used, 0))} of its "
            f"{gib(quota)} storage quota left. Delete datasets or models you no longer need, or ask "
            "an administrator to raise the quota."
        )
