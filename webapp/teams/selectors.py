from django.db.models import QuerySet

from webapp.teams.models import Membership, Team


def teams_for_user(user) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user)


def memberships_of(team: Team) -> QuerySet[Membership]:
    return team.memberships.select_related("user").order_by("user__username")


def current_team(request) -> Team | None:
    """The team picked in the switcher, else the user's first team."""
    teams = teams_for_user(request.user)
    team_id = request.session.get("team_id")
    return (team_id and teams.filter(id=team_id).first()) or teams.first()
