from django.db.models import QuerySet

from webapp.projects.models import Project


def projects_for_user(user, *, team_id: int | None = None) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    projects = Project.objects.filter(team__memberships__user=user).select_related("team")
    return projects.filter(team_id=team_id) if team_id is not None else projects
