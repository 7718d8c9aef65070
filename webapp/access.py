"""The one place that decides who may do what.

Every page, API view and websocket consumer asks here. A user who is not in an object's team
gets 404 (we do not confirm that it exists); a member whose role is too low gets 403.
"""

from enum import StrEnum
from typing import TypeVar

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404

from webapp.teams.models import Membership, Role


M = TypeVar("M", bound=Model)


class Action(StrEnum):
    VIEW = "view"  # read anything in the team
    WRITE = "write"  # create and change work: projects, uploads, jobs
    MANAGE = "manage"  # members and roles, deleting projects
    OWN = "own"  # the team itself, and who owns it


_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}
_LEAST_ROLE = {Action.VIEW: Role.VIEWER, Action.WRITE: Role.MEMBER, Action.MANAGE: Role.ADMIN, Action.OWN: Role.OWNER}


def role_allows(role: str, action: Action) -> bool:
    return _RANK[Role(role)] >= _RANK[_LEAST_ROLE[action]]


def role_in_team(user, team_id: int) -> str | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(team_id=team_id, user=user).values_list("role", flat=True).first()


def authorize(user, team_id: int, action: Action) -> str:
    """Return the user's role in the team, or raise Http404 / PermissionDenied."""
    role = role_in_team(user, team_id)
    if role is None:
        raise Http404("No such object.")
    if not role_allows(role, action):
        raise PermissionDenied(f"Your role ({role}) may not {action} in this team.")
    return role


def get_for_user(user, queryset: QuerySet[M], pk: int, action: Action, *, team_lookup: str) -> M:
    """Fetch one team-owned object for `user`; `team_lookup` is the path to its team ("project__team")."""
    row = queryset.filter(pk=pk).values_list(team_lookup, flat=True).first()
    if row is None:
        raise Http404("No such object.")
    authorize(user, row, action)
    return queryset.get(pk=pk)
