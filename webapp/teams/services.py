"""Team verbs. Callers check the actor's right to manage first (webapp.access);
these guard the rules about owners that depend on who acts and on whom."""

from django.contrib.auth import get_user_model
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q

from webapp.access import Action, role_allows
from webapp.teams.models import Membership, Role, Team

User = get_user_model()


def team_create_refusal(user) -> str:
    """Why `user` may not make another team ("" if they may). Each team brings its own storage
    quota, so who makes teams is the site's choice: site admins always; other accounts up to
    TEAMS_PER_USER teams they own (0, the default: none)."""
    if user.is_staff or user.is_superuser:
        return ""
    limit = settings.TEAMS_PER_USER
    if limit <= 0:
        return "Only site administrators create teams on this site. Ask one to make a team for you, or to add you to one."
    if Membership.objects.filter(user=user, role=Role.OWNER).count() >= limit:
        return (f"You own {limit} team{'s' if limit != 1 else ''}, as many as this site allows one account. "
                "Use one of them, or ask a site administrator for another.")
    return ""


@transaction.atomic
def team_create(*, name: str, creator) -> Team:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A team needs a name."})
    User.objects.select_for_update().filter(id=creator.id).first()  # one creation at a time per account: the count holds
    refusal = team_create_refusal(creator)
    if refusal:
        raise PermissionDenied(refusal)
    team = Team.objects.create(name=name)
    Membership.objects.create(team=team, user=creator, role=Role.OWNER)
    return team


def user_find(identifier: str):
    """An account by username or e-mail address, or None."""
    identifier = identifier.strip()
    if not identifier:
        return None
    return User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier), is_active=True).first()


def _check_owner_rule(*, actor_role: str, role_before: str | None, role_after: str | None) -> None:
    touches_owner = Role.OWNER in (role_before, role_after)
    if touches_owner and not role_allows(actor_role, Action.OWN):
        raise ValidationError("Only an owner can make someone an owner or change an owner's role.")


def _owner_count(team: Team) -> int:
    return team.memberships.filter(role=Role.OWNER).count()


@transaction.atomic
def member_add(*, team: Team, actor_role: str, identifier: str, role: str) -> Membership:
    user = user_find(identifier)
    if user is None:
        raise ValidationError({"user": f"No account with the username or e-mail “{identifier}”."})
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role “{role}”."})
    if team.memberships.filter(user=user).exists():
        raise ValidationError({"user": f"{user.username} is already a member of {team.name}."})
    _check_owner_rule(actor_role=actor_role, role_before=None, role_after=role)
    return Membership.objects.create(team=team, user=user, role=role)


@transaction.atomic
def member_set_role(*, membership: Membership, actor_role: str, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role “{role}”."})
    _check_owner_rule(actor_role=actor_role, role_before=membership.role, role_after=role)
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(membership.team) == 1:
        raise ValidationError("A team needs at least one owner: make someone else owner first.")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, actor_role: str) -> None:
    _check_owner_rule(actor_role=actor_role, role_before=membership.role, role_after=None)
    if membership.role == Role.OWNER and _owner_count(membership.team) == 1:
        raise ValidationError("A team needs at least one owner: make someone else owner first.")
    membership.delete()


def team_rename(*, team: Team, name: str) -> Team:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A team needs a name."})
    team.name = name
    team.save(update_fields=["name"])
    return team


def team_delete(*, team: Team) -> None:
    """Every project of the team as project_delete does it (jobs cancelled, rows and files gone),
    its uploads, then the team."""
    from webapp.projects.deletion import projects_delete  # projects import teams' models
    from webapp.uploads.models import Upload

    projects_delete(list(team.projects.values_list("id", flat=True)), extra_uploads=Upload.objects.filter(team=team))
    team.delete()
