from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.access import Action, authorize, role_allows
from webapp.projects.deletion import contents_of
from webapp.projects.selectors import projects_for_user
from webapp.teams import services
from webapp.teams.forms import MemberAddForm, MemberRoleForm, TeamForm
from webapp.teams.models import Membership, Team
from webapp.teams.selectors import current_team, memberships_of, teams_for_user
from webapp.uploads.models import Upload


def _flash_errors(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    team = current_team(request)
    return redirect("team_detail", team_id=team.id) if team else redirect("team_list")


@login_required
@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST or None)
    refusal = services.team_create_refusal(request.user)
    if request.method == "POST" and not refusal and form.is_valid():
        try:
            team = services.team_create(name=form.cleaned_data["name"], creator=request.user)
        except PermissionDenied as denied:  # another request of the same account made one first
            refusal = str(denied)
        else:
            request.session["team_id"] = team.id
            messages.success(request, f"Team {team.name} created. You are its owner.")
            return redirect("team_detail", team_id=team.id)
    context = {"teams": teams_for_user(request.user), "form": form, "create_refusal": refusal}
    return render(request, "teams/team_list.html", context, status=403 if request.method == "POST" and refusal else 200)


@login_required
@require_GET
def team_detail(request: HttpRequest, team_id: int) -> HttpResponse:
    role = authorize(request.user, team_id, Action.VIEW)
    team = get_object_or_404(Team, id=team_id)
    request.session["team_id"] = team.id
    context = {
        "team": team,
        "role": role,
        "projects": projects_for_user(request.user, team_id=team.id),
        "can_write": role_allows(role, Action.WRITE),
        "can_manage": role_allows(role, Action.MANAGE),
        "can_own": role_allows(role, Action.OWN),
    }
    return render(request, "teams/team_detail.html", context)


@login_required
@require_POST
def team_switch(request: HttpRequest, team_id: int) -> HttpResponse:
    authorize(request.user, team_id, Action.VIEW)
    request.session["team_id"] = team_id
    return redirect("team_detail", team_id=team_id)


@login_required
@require_http_methods(["GET", "POST"])
def team_members(request: HttpRequest, team_id: int) -> HttpResponse:
    role = authorize(request.user, team_id, Action.VIEW)
    team = get_object_or_404(Team, id=team_id)
    form = MemberAddForm(request.POST or None)
    if request.method == "POST":
        authorize(request.user, team_id, Action.MANAGE)
        if form.is_valid():
            try:
                membership = services.member_add(
                    team=team, actor_role=role, identifier=form.cleaned_data["identifier"], role=form.cleaned_data["role"]
                )
            except ValidationError as error:
                _flash_errors(request, error)
            else:
                messages.success(request, f"{membership.user.username} joined {team.name} as {membership.role}.")
                return redirect("team_members", team_id=team.id)
    context = {
        "team": team,
        "role": role,
        "memberships": memberships_of(team),
        "form": form,
        "can_manage": role_allows(role, Action.MANAGE),
        "role_form": MemberRoleForm(),
    }
    return render(request, "teams/team_members.html", context)


def _membership(request: HttpRequest, team_id: int, membership_id: int) -> tuple[Membership, str]:
    role = authorize(request.user, team_id, Action.MANAGE)
    return get_object_or_404(Membership, id=membership_id, team_id=team_id), role


@login_required
@require_POST
def member_role(request: HttpRequest, team_id: int, membership_id: int) -> HttpResponse:
    membership, role = _membership(request, team_id, membership_id)
    form = MemberRoleForm(request.POST)
    if form.is_valid():
        try:
            services.member_set_role(membership=membership, actor_role=role, role=form.cleaned_data["role"])
        except ValidationError as error:
            _flash_errors(request, error)
        else:
            messages.success(request, f"{membership.user.username} is now {membership.role}.")
    return redirect("team_members", team_id=team_id)


@login_required
@require_POST
def member_remove(request: HttpRequest, team_id: int, membership_id: int) -> HttpResponse:
    membership, role = _membership(request, team_id, membership_id)
    try:
        services.member_remove(membership=membership, actor_role=role)
    except ValidationError as error:
        _flash_errors(request, error)
    else:
        messages.success(request, f"{membership.user.username} was removed from the team.")
    return redirect("team_members", team_id=team_id)


@login_required
@require_http_methods(["GET", "POST"])
def team_delete(request: HttpRequest, team_id: int) -> HttpResponse:
    """GET: what goes with the team, to confirm; POST: delete it (owners only)."""
    authorize(request.user, team_id, Action.OWN)
    team = get_object_or_404(Team, id=team_id)
    if request.method == "POST":
        services.team_delete(team=team)
        request.session.pop("team_id", None)
        messages.success(request, f"Team {team.name} and everything in it deleted.")
        return redirect("team_list")
    project_ids = list(team.projects.values_list("id", flat=True))
    contents = contents_of(project_ids, extra_uploads=Upload.objects.filter(team=team))
    return render(request, "delete_confirm.html", {
        "team": team, "subject": f"team {team.name}", "contents": contents, "is_team": True,
        "cancel_url": reverse("team_detail", args=[team.id]), "action": reverse("team_delete", args=[team.id]),
    })
