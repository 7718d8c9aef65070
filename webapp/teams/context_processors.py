from webapp.teams.selectors import current_team, teams_for_user


def team_switcher(request) -> dict:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"my_teams": teams_for_user(request.user), "current_team": current_team(request)}
