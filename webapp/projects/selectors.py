from django.db.models import QuerySet

from webapp.access import Action, get_for_user

from webapp.projects.models import Project


def projects_for_user(user, *, team_id: int | None = None) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    projects = Project.objects.filter(team__memberships__user=user).select_related("team")
    return projects.filter(team_id=team_id) if team_id is not None else projects


def project_for_user(user, project_id: int, action: Action) -> Project:
    """The project if the user's role in its team allows `action`; 404 for other teams' projects."""
    return get_for_user(user, Project.objects.select_related("team"), project_id, action, team_lookup="team")
