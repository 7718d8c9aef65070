"""Who may do what: every role × every action, on pages and through the API, in one's own team
and in someone else's.

Rules (webapp/access.py): VIEW needs viewer, WRITE member, MANAGE admin, OWN owner. A role too
low answers 403 and changes nothing; a user who is not in the object's team gets 404 (never
403, never data) and changes nothing; anonymous users are sent to log in (pages) or refused
with 401/403 (API).

Every parametrized case gets a fresh team, so destructive actions never meet each other.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpResponse

from tests.conftest import make_user
from webapp.projects.models import Project
from webapp.teams.models import Membership, Role, Team

RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}
ROLES = [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER]

PROJECT_NAME = "Riesling-7f3a"
PROJECT_SECRET = "blend-notes-9c2e"
TARGET = "tessa-target"  # a plain member whom admins act on
NEWCOMER = "nina-newcomer"  # an account in no team yet
OTHER_PROJECT = "Charlie-cellar-4d1b"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    team: Team
    project: Project
    target: Membership
    other_team: Team
    other_project: Project
    users: dict[str, AbstractBaseUser] = field(default_factory=dict)  # by role, and "outsider"


@pytest.fixture
def world(alice, bob, charlie, team_a, team_c) -> World:
    """Team A: alice owner, dave admin, bob member, erin viewer, tessa a second member.
    Charlie owns team C and is in no membership of team A."""
    dave, erin, tessa = make_user("dave"), make_user("erin"), make_user(TARGET)
    make_user(NEWCOMER)
    Membership.objects.create(team=team_a, user=dave, role=Role.ADMIN)
    Membership.objects.create(team=team_a, user=erin, role=Role.VIEWER)
    target = Membership.objects.create(team=team_a, user=tessa, role=Role.MEMBER)
    return World(
        team=team_a,
        project=Project.objects.create(team=team_a, name=PROJECT_NAME, description=PROJECT_SECRET),
        target=target,
        other_team=team_c,
        other_project=Project.objects.create(team=team_c, name=OTHER_PROJECT),
        users={Role.OWNER: alice, Role.ADMIN: dave, Role.MEMBER: bob, Role.VIEWER: erin, "outsider": charlie},
    )


# --- What each action is, and how to tell that it took effect ------------------------------------


def _body(response: HttpResponse) -> str:
    return response.content.decode()


def _json(response: HttpResponse):
    return response.json() if response.get("Content-Type", "").startswith("application/json") else None


def _membership_role(w: World, username: str) -> str | None:
    return Membership.objects.filter(team=w.team, user__username=username).values_list("role", flat=True).first()


def _project_named(w: World, name: str) -> bool:
    return Project.objects.filter(team=w.team, name=name).exists()


@dataclass(frozen=True)
class Act:
    name: str
    method: str
    url: Callable[[World], str]
    least: Role
    done: Callable[[World, HttpResponse], bool]  # the change happened, or (reads) the data was shown
    data: Callable[[World], dict] | None = None
    api: bool = False

    def send(self, client, w: World) -> HttpResponse:
        url, data = self.url(w), self.data(w) if self.data else None
        if self.method == "get":
            return client.get(url)
        if self.api:
            return getattr(client, self.method)(url, data=data, content_type="application/json")
        return client.post(url, data=data or {})


PAGES = [
    Act("view team page", "get", lambda w: f"/teams/{w.team.id}/", Role.VIEWER,
        done=lambda w, r: PROJECT_NAME in _body(r)),
    Act("switch to team", "post", lambda w: f"/teams/{w.team.id}/switch/", Role.VIEWER,
        done=lambda w, r: r.wsgi_request.session.get("team_id") == w.team.id),
    Act("view members page", "get", lambda w: f"/teams/{w.team.id}/members/", Role.VIEWER,
        done=lambda w, r: TARGET in _body(r)),
    Act("add member", "post", lambda w: f"/teams/{w.team.id}/members/", Role.ADMIN,
        data=lambda w: {"identifier": NEWCOMER, "role": Role.MEMBER},
        done=lambda w, r: _membership_role(w, NEWCOMER) == Role.MEMBER),
    Act("change a role", "post", lambda w: f"/teams/{w.team.id}/members/{w.target.id}/role/", Role.ADMIN,
        data=lambda w: {"role": Role.VIEWER},
        done=lambda w, r: _membership_role(w, TARGET) == Role.VIEWER),
    Act("remove member", "post", lambda w: f"/teams/{w.team.id}/members/{w.target.id}/remove/", Role.ADMIN,
        done=lambda w, r: _membership_role(w, TARGET) is None),
    Act("create project", "post", lambda w: f"/teams/{w.team.id}/projects/new/", Role.MEMBER,
        data=lambda w: {"name": "Merlot", "description": ""},
        done=lambda w, r: _project_named(w, "Merlot")),
    Act("view project", "get", lambda w: f"/projects/{w.project.id}/", Role.VIEWER,
        done=lambda w, r: PROJECT_SECRET in _body(r)),
    Act("open edit form", "get", lambda w: f"/projects/{w.project.id}/edit/", Role.MEMBER,
        done=lambda w, r: f'value="{PROJECT_NAME}"' in _body(r)),
    Act("edit project", "post", lambda w: f"/projects/{w.project.id}/edit/", Role.MEMBER,
        data=lambda w: {"name": "Renamed", "description": "new notes"},
        done=lambda w, r: _project_named(w, "Renamed") and not _project_named(w, PROJECT_NAME)),
    Act("delete project", "post", lambda w: f"/projects/{w.project.id}/delete/", Role.ADMIN,
        done=lambda w, r: not Project.objects.filter(id=w.project.id).exists()),
]

API = [
    Act("get team", "get", lambda w: f"/api/v1/teams/{w.team.id}/", Role.VIEWER, api=True,
        done=lambda w, r: (_json(r) or {}).get("name") == w.team.name),
    Act("rename team", "patch", lambda w: f"/api/v1/teams/{w.team.id}/", Role.ADMIN, api=True,
        data=lambda w: {"name": "Renamed team"},
        done=lambda w, r: Team.objects.filter(id=w.team.id, name="Renamed team").exists()),
    Act("delete team", "delete", lambda w: f"/api/v1/teams/{w.team.id}/", Role.OWNER, api=True,
        done=lambda w, r: not Team.objects.filter(id=w.team.id).exists()),
    Act("list members", "get", lambda w: f"/api/v1/teams/{w.team.id}/members/", Role.VIEWER, api=True,
        done=lambda w, r: TARGET in [m["username"] for m in _json(r) or [] if isinstance(m, dict)]),
    Act("add member", "post", lambda w: f"/api/v1/teams/{w.team.id}/members/", Role.ADMIN, api=True,
        data=lambda w: {"user": NEWCOMER, "role": Role.MEMBER},
        done=lambda w, r: _membership_role(w, NEWCOMER) == Role.MEMBER),
    Act("change a role", "patch", lambda w: f"/api/v1/teams/{w.team.id}/members/{w.target.id}/", Role.ADMIN,
        api=True, data=lambda w: {"role": Role.VIEWER},
        done=lambda w, r: _membership_role(w, TARGET) == Role.VIEWER),
    Act("remove member", "delete", lambda w: f"/api/v1/teams/{w.team.id}/members/{w.target.id}/", Role.ADMIN,
        api=True, done=lambda w, r: _membership_role(w, TARGET) is None),
    Act("create project", "post", lambda w: "/api/v1/projects/", Role.MEMBER, api=True,
        data=lambda w: {"team": w.team.id, "name": "Merlot"},
        done=lambda w, r: _project_named(w, "Merlot")),
    Act("get project", "get", lambda w: f"/api/v1/projects/{w.project.id}/", Role.VIEWER, api=True,
        done=lambda w, r: (_json(r) or {}).get("description") == PROJECT_SECRET),
    Act("edit project", "patch", lambda w: f"/api/v1/projects/{w.project.id}/", Role.MEMBER, api=True,
        data=lambda w: {"name": "Renamed"},
        done=lambda w, r: _project_named(w, "Renamed") and not _project_named(w, PROJECT_NAME)),
    Act("delete project", "delete", lambda w: f"/api/v1/projects/{w.project.id}/", Role.ADMIN, api=True,
        done=lambda w, r: not Project.objects.filter(id=w.project.id).exists()),
]

def _slug(act: Act) -> str:
    return ("api-" if act.api else "page-") + act.name.replace(" ", "-")


ACTIONS = [pytest.param(a, id=_slug(a)) for a in PAGES + API]


def _cases(allowed: bool) -> list:
    return [
        pytest.param(role, a, id=f"{role}-{a_id}")
        for role in ROLES
        for a, a_id in ((p.values[0], p.id) for p in ACTIONS)
        if (RANK[role] >= RANK[a.least]) is allowed
    ]


def test_the_matrix_covers_every_role_with_both_outcomes():
    # Each role is allowed something and (but the owner) denied something: the table is not one-sided.
    allowed, denied = _cases(True), _cases(False)
    assert {p.values[0] for p in allowed} == set(ROLES)
    assert {p.values[0] for p in denied} == {Role.ADMIN, Role.MEMBER, Role.VIEWER}
    assert len(allowed) + len(denied) == len(ROLES) * len(ACTIONS)


# --- Own team: the role decides -------------------------------------------------------------------


@pytest.mark.parametrize("role, act", _cases(allowed=True))
def test_it_lets_a_role_at_or_above_the_least_role_act(client, world, role, act):
    client.force_login(world.users[role])
    response = act.send(client, world)
    assert 200 <= response.status_code < 400, _body(response)[:500]
    assert act.done(world, response)


@pytest.mark.parametrize("role, act", _cases(allowed=False))
def test_it_answers_403_to_a_role_below_the_least_role(client, world, role, act):
    client.force_login(world.users[role])
    response = act.send(client, world)
    assert response.status_code == 403
    assert not act.done(world, response)


# --- Another team: it does not exist for you ------------------------------------------------------


@pytest.mark.parametrize("act", ACTIONS)
def test_it_answers_404_to_an_outsider(client, world, act):
    # Charlie owns a team of his own, and is in no membership of team A.
    client.force_login(world.users["outsider"])
    response = act.send(client, world)
    assert response.status_code == 404
    assert not act.done(world, response)
    assert PROJECT_NAME not in _body(response) and PROJECT_SECRET not in _body(response)
    assert TARGET not in _body(response) and world.team.name not in _body(response)


@pytest.mark.parametrize("act", [pytest.param(a, id=_slug(a)) for a in PAGES])
def test_it_sends_anonymous_page_visitors_to_log_in(client, world, act):
    response = act.send(client, world)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert not act.done(world, response)


@pytest.mark.parametrize("act", [pytest.param(a, id=_slug(a)) for a in API])
def test_it_refuses_anonymous_api_calls(client, world, act):
    response = act.send(client, world)
    assert response.status_code in (401, 403)
    assert not act.done(world, response)


# --- Mixed ids: an object of another team reached through one's own team's URL ------------------


@pytest.fixture
def foreign_membership(world) -> Membership:
    return Membership.objects.get(team=world.other_team, user=world.users["outsider"])


@pytest.mark.parametrize(
    "method, url",
    [
        ("post", "/teams/{team}/members/{membership}/role/"),
        ("post", "/teams/{team}/members/{membership}/remove/"),
        ("patch", "/api/v1/teams/{team}/members/{membership}/"),
        ("delete", "/api/v1/teams/{team}/members/{membership}/"),
    ],
)
def test_it_404s_another_teams_membership_under_ones_own_team(client, world, foreign_membership, method, url):
    client.force_login(world.users[Role.OWNER])
    url = url.format(team=world.team.id, membership=foreign_membership.id)
    if url.startswith("/api/"):
        response = getattr(client, method)(url, data={"role": Role.VIEWER}, content_type="application/json")
    else:
        response = client.post(url, data={"role": Role.VIEWER})
    assert response.status_code == 404
    foreign_membership.refresh_from_db()
    assert foreign_membership.role == Role.OWNER


@pytest.mark.parametrize("url", ["/teams/{id}/", "/teams/{id}/members/", "/api/v1/teams/{id}/"])
def test_it_404s_a_team_that_does_not_exist_like_a_foreign_one(client, world, url):
    client.force_login(world.users[Role.OWNER])
    assert client.get(url.format(id=world.other_team.id + 1000)).status_code == 404


# --- Lists: never another team's rows -------------------------------------------------------------


ALL_ACTORS = [*ROLES, "outsider"]


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_it_lists_only_the_users_own_teams(client, world, actor):
    client.force_login(world.users[actor])
    response = client.get("/api/v1/teams/")
    assert response.status_code == 200
    expected = [world.other_team.id] if actor == "outsider" else [world.team.id]
    assert [team["id"] for team in response.json()] == expected


@pytest.mark.parametrize("actor", ALL_ACTORS)
def test_it_lists_only_projects_of_the_users_teams(client, world, actor):
    client.force_login(world.users[actor])
    response = client.get("/api/v1/projects/")
    assert response.status_code == 200
    expected = [OTHER_PROJECT] if actor == "outsider" else [PROJECT_NAME]
    assert [project["name"] for project in response.json()] == expected


def test_it_filters_a_foreign_team_to_no_projects(client, world):
    client.force_login(world.users["outsider"])
    response = client.get(f"/api/v1/projects/?team={world.team.id}")
    assert response.status_code == 200
    assert response.json() == []


def test_it_leaves_foreign_teams_out_of_the_team_list_page_and_switcher(client, world):
    client.force_login(world.users["outsider"])
    body = _body(client.get("/teams/"))
    assert world.other_team.name in body
    assert world.team.name not in body
    assert f"/teams/{world.team.id}/" not in body
