"""Team rules: who becomes owner, how members are added, who may touch the owner role, that a
team always keeps an owner, and the team switcher."""

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from tests.conftest import make_user
from tests.helpers import at_once
from webapp.teams import services
from webapp.teams.models import Membership, Role, Team


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dave(team_a):
    """An admin of team A."""
    user = make_user("dave")
    Membership.objects.create(team=team_a, user=user, role=Role.ADMIN)
    return user


def _role(team: Team, user) -> str | None:
    return team.memberships.filter(user=user).values_list("role", flat=True).first()


def _alice_owner(team_a, alice) -> Membership:
    return team_a.memberships.get(user=alice)


# --- Creating a team ------------------------------------------------------------------------------


def test_it_makes_the_creator_owner(alice, settings):
    settings.TEAMS_PER_USER = 1
    team = services.team_create(name="  Vineyard  ", creator=alice)
    assert team.name == "Vineyard"
    assert list(team.memberships.values_list("user__username", "role")) == [("alice", Role.OWNER)]


def test_it_refuses_a_blank_team_name(alice):
    with pytest.raises(ValidationError) as error:
        services.team_create(name="   ", creator=alice)
    assert "name" in error.value.message_dict
    assert not Team.objects.exists()


def test_it_makes_the_creator_owner_from_the_team_list_page(client, alice):
    alice.is_staff = True  # a site admin
    alice.save()
    client.force_login(alice)
    response = client.post("/teams/", {"name": "Cellar"})
    team = Team.objects.get(name="Cellar")
    assert response.status_code == 302 and response["Location"] == f"/teams/{team.id}/"
    assert _role(team, alice) == Role.OWNER
    assert client.session["team_id"] == team.id


def test_it_lets_only_site_admins_make_teams_by_default(client, alice):
    client.force_login(alice)
    page = client.get("/teams/")
    assert "Only site administrators create teams" in page.content.decode() and "Create team" not in page.content.decode()
    response = client.post("/teams/", {"name": "Cellar"})
    assert response.status_code == 403 and "Only site administrators" in response.content.decode()
    response = client.post("/api/v1/teams/", {"name": "Cellar"}, content_type="application/json")
    assert response.status_code == 403 and "Only site administrators" in response.json()["detail"]
    assert not Team.objects.exists()


def test_it_lets_an_account_own_as_many_teams_as_the_setting_says(client, alice, settings):
    settings.TEAMS_PER_USER = 2
    client.force_login(alice)
    assert client.post("/api/v1/teams/", {"name": "One"}, content_type="application/json").status_code == 201
    assert client.post("/teams/", {"name": "Two"}).status_code == 302
    response = client.post("/api/v1/teams/", {"name": "Three"}, content_type="application/json")
    assert response.status_code == 403 and "You own 2 teams" in response.json()["detail"]
    assert client.post("/teams/", {"name": "Three"}).status_code == 403
    assert sorted(Team.objects.values_list("name", flat=True)) == ["One", "Two"]


def test_parallel_creations_cannot_pass_the_limit_together(transactional_db, alice, settings):
    settings.TEAMS_PER_USER = 1
    results = at_once(10, lambda i: services.team_create(name=f"Team {i}", creator=alice))
    assert sum(isinstance(result, Team) for result in results) == 1
    assert all(isinstance(result, PermissionDenied) for result in results if not isinstance(result, Team))
    assert Team.objects.count() == 1 and Membership.objects.filter(user=alice, role=Role.OWNER).count() == 1


# --- Adding members ---------------------------------------------------------------------------------


def test_it_adds_a_member_by_username(team_a, charlie):
    membership = services.member_add(team=team_a, actor_role=Role.OWNER, identifier="charlie", role=Role.VIEWER)
    assert (membership.user, membership.role) == (charlie, Role.VIEWER)
    assert _role(team_a, charlie) == Role.VIEWER


def test_it_adds_a_member_by_email(team_a, charlie):
    membership = services.member_add(
        team=team_a, actor_role=Role.ADMIN, identifier=" Charlie@Example.COM ", role=Role.MEMBER
    )
    assert membership.user == charlie
    assert _role(team_a, charlie) == Role.MEMBER


def test_it_explains_an_unknown_user(team_a):
    with pytest.raises(ValidationError) as error:
        services.member_add(team=team_a, actor_role=Role.OWNER, identifier="nobody@example.com", role=Role.MEMBER)
    assert "No account" in error.value.message_dict["user"][0]
    assert "nobody@example.com" in error.value.message_dict["user"][0]
    assert team_a.memberships.count() == 2


def test_it_does_not_add_a_deactivated_account(team_a, charlie):
    charlie.is_active = False
    charlie.save()
    with pytest.raises(ValidationError) as error:
        services.member_add(team=team_a, actor_role=Role.OWNER, identifier="charlie", role=Role.MEMBER)
    assert "user" in error.value.message_dict
    assert _role(team_a, charlie) is None


def test_it_refuses_a_duplicate_member(team_a, bob):
    with pytest.raises(ValidationError) as error:
        services.member_add(team=team_a, actor_role=Role.OWNER, identifier="BOB", role=Role.ADMIN)
    assert "already a member" in error.value.message_dict["user"][0]
    assert _role(team_a, bob) == Role.MEMBER
    assert team_a.memberships.filter(user=bob).count() == 1


def test_it_refuses_an_unknown_role(team_a, charlie):
    with pytest.raises(ValidationError) as error:
        services.member_add(team=team_a, actor_role=Role.OWNER, identifier="charlie", role="superuser")
    assert "role" in error.value.message_dict
    assert _role(team_a, charlie) is None


def test_it_shows_the_unknown_user_error_on_the_members_page(client, alice, team_a):
    client.force_login(alice)
    response = client.post(f"/teams/{team_a.id}/members/", {"identifier": "ghost", "role": Role.MEMBER})
    assert response.status_code == 200
    assert "No account with the username or e-mail “ghost”." in response.content.decode()
    assert team_a.memberships.count() == 2


# --- The owner role: only owners grant or change it -------------------------------------------------


def test_it_lets_an_owner_add_an_owner(team_a, charlie):
    services.member_add(team=team_a, actor_role=Role.OWNER, identifier="charlie", role=Role.OWNER)
    assert _role(team_a, charlie) == Role.OWNER


def test_it_lets_an_owner_promote_to_owner(team_a, bob):
    services.member_set_role(membership=team_a.memberships.get(user=bob), actor_role=Role.OWNER, role=Role.OWNER)
    assert _role(team_a, bob) == Role.OWNER


def test_it_refuses_an_admin_adding_an_owner(team_a, dave, charlie):
    with pytest.raises(ValidationError, match="Only an owner"):
        services.member_add(team=team_a, actor_role=Role.ADMIN, identifier="charlie", role=Role.OWNER)
    assert _role(team_a, charlie) is None


def test_it_refuses_an_admin_promoting_to_owner(team_a, dave, bob):
    with pytest.raises(ValidationError, match="Only an owner"):
        services.member_set_role(membership=team_a.memberships.get(user=bob), actor_role=Role.ADMIN, role=Role.OWNER)
    assert _role(team_a, bob) == Role.MEMBER


def test_it_refuses_an_admin_promoting_themselves_to_owner(team_a, dave):
    with pytest.raises(ValidationError, match="Only an owner"):
        services.member_set_role(membership=team_a.memberships.get(user=dave), actor_role=Role.ADMIN, role=Role.OWNER)
    assert _role(team_a, dave) == Role.ADMIN


def test_it_refuses_an_admin_demoting_an_owner(team_a, alice, bob, dave):
    services.member_set_role(membership=team_a.memberships.get(user=bob), actor_role=Role.OWNER, role=Role.OWNER)
    with pytest.raises(ValidationError, match="Only an owner"):
        services.member_set_role(membership=_alice_owner(team_a, alice), actor_role=Role.ADMIN, role=Role.MEMBER)
    assert _role(team_a, alice) == Role.OWNER


def test_it_refuses_an_admin_removing_an_owner(team_a, alice, bob, dave):
    services.member_set_role(membership=team_a.memberships.get(user=bob), actor_role=Role.OWNER, role=Role.OWNER)
    with pytest.raises(ValidationError, match="Only an owner"):
        services.member_remove(membership=_alice_owner(team_a, alice), actor_role=Role.ADMIN)
    assert _role(team_a, alice) == Role.OWNER


def test_it_lets_an_admin_manage_non_owners(team_a, dave, bob, charlie):
    services.member_add(team=team_a, actor_role=Role.ADMIN, identifier="charlie", role=Role.ADMIN)
    services.member_set_role(membership=team_a.memberships.get(user=bob), actor_role=Role.ADMIN, role=Role.VIEWER)
    assert (_role(team_a, charlie), _role(team_a, bob)) == (Role.ADMIN, Role.VIEWER)
    services.member_remove(membership=team_a.memberships.get(user=bob), actor_role=Role.ADMIN)
    assert _role(team_a, bob) is None


def test_it_flashes_the_owner_rule_on_the_members_page(client, team_a, dave, bob):
    client.force_login(dave)
    membership = team_a.memberships.get(user=bob)
    response = client.post(f"/teams/{team_a.id}/members/{membership.id}/role/", {"role": Role.OWNER}, follow=True)
    assert response.status_code == 200
    assert "Only an owner can make someone an owner" in response.content.decode()
    assert _role(team_a, bob) == Role.MEMBER


def test_it_answers_400_to_an_admin_granting_owner_through_the_api(client, team_a, dave, bob):
    client.force_login(dave)
    membership = team_a.memberships.get(user=bob)
    response = client.patch(
        f"/api/v1/teams/{team_a.id}/members/{membership.id}/", {"role": Role.OWNER}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "Only an owner" in str(response.json())
    assert _role(team_a, bob) == Role.MEMBER


def test_it_answers_400_to_an_admin_adding_an_owner_through_the_api(client, team_a, dave, charlie):
    client.force_login(dave)
    response = client.post(
        f"/api/v1/teams/{team_a.id}/members/", {"user": "charlie", "role": Role.OWNER}, content_type="application/json"
    )
    assert response.status_code == 400
    assert _role(team_a, charlie) is None


# --- A team keeps at least one owner ------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER, Role.VIEWER])
def test_it_keeps_the_last_owner_from_being_demoted(team_a, alice, role):
    with pytest.raises(ValidationError, match="at least one owner"):
        services.member_set_role(membership=_alice_owner(team_a, alice), actor_role=Role.OWNER, role=role)
    assert _role(team_a, alice) == Role.OWNER


def test_it_keeps_the_last_owner_from_being_removed(team_a, alice):
    with pytest.raises(ValidationError, match="at least one owner"):
        services.member_remove(membership=_alice_owner(team_a, alice), actor_role=Role.OWNER)
    assert _role(team_a, alice) == Role.OWNER


def test_it_lets_an_owner_step_down_once_there_is_another_owner(team_a, alice, bob):
    services.member_set_role(membership=team_a.memberships.get(user=bob), actor_role=Role.OWNER, role=Role.OWNER)
    services.member_set_role(membership=_alice_owner(team_a, alice), actor_role=Role.OWNER, role=Role.ADMIN)
    assert (_role(team_a, alice), _role(team_a, bob)) == (Role.ADMIN, Role.OWNER)
    services.member_remove(membership=_alice_owner(team_a, alice), actor_role=Role.OWNER)
    assert _role(team_a, alice) is None


def test_it_keeps_the_last_owner_on_the_members_page(client, team_a, alice):
    client.force_login(alice)
    membership = _alice_owner(team_a, alice)
    response = client.post(f"/teams/{team_a.id}/members/{membership.id}/remove/", follow=True)
    assert "A team needs at least one owner" in response.content.decode()
    assert _role(team_a, alice) == Role.OWNER


def test_it_answers_400_when_the_api_would_remove_the_last_owner(client, team_a, alice):
    client.force_login(alice)
    membership = _alice_owner(team_a, alice)
    response = client.delete(f"/api/v1/teams/{team_a.id}/members/{membership.id}/")
    assert response.status_code == 400
    assert "at least one owner" in str(response.json())
    assert _role(team_a, alice) == Role.OWNER


# --- The team switcher and the home page --------------------------------------------------------


@pytest.fixture
def team_b(alice) -> Team:
    """A second team of alice's, named to sort after Team A."""
    team = Team.objects.create(name="Team B")
    Membership.objects.create(team=team, user=alice, role=Role.OWNER)
    return team


def _nav_team(client) -> str:
    """The current team's name, as the switcher in the nav shows it."""
    body = client.get("/workers/").content.decode()
    match = re.search(r'data-testid="team-switcher"[^>]*>\s*<summary[^>]*>(.*?)</summary>', body, re.S)
    assert match, body
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_it_shows_the_first_team_in_the_nav_before_any_switch(client, alice, team_a, team_b):
    client.force_login(alice)
    assert _nav_team(client) == "Team A"


def test_it_switches_the_current_team(client, alice, team_a, team_b):
    client.force_login(alice)
    response = client.post(f"/teams/{team_b.id}/switch/")
    assert response.status_code == 302 and response["Location"] == f"/teams/{team_b.id}/"
    assert client.session["team_id"] == team_b.id
    assert _nav_team(client) == "Team B"


def test_it_404s_switching_to_a_foreign_team(client, alice, team_a, team_b, team_c):
    client.force_login(alice)
    client.post(f"/teams/{team_b.id}/switch/")
    response = client.post(f"/teams/{team_c.id}/switch/")
    assert response.status_code == 404
    assert client.session["team_id"] == team_b.id
    assert _nav_team(client) == "Team B"


def test_it_needs_a_post_to_switch(client, alice, team_a, team_b):
    client.force_login(alice)
    assert client.get(f"/teams/{team_b.id}/switch/").status_code == 405
    assert "team_id" not in client.session


def test_it_redirects_home_to_the_current_team(client, alice, team_a, team_b):
    client.force_login(alice)
    assert client.get("/")["Location"] == f"/teams/{team_a.id}/"
    client.post(f"/teams/{team_b.id}/switch/")
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == f"/teams/{team_b.id}/"


def test_it_redirects_home_to_the_team_list_without_a_team(client, charlie):
    client.force_login(charlie)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/teams/"


def test_it_redirects_anonymous_home_to_log_in(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_falls_back_to_another_team_when_removed_from_the_current_one(client, alice, bob, team_a, team_b):
    services.member_add(team=team_b, actor_role=Role.OWNER, identifier="bob", role=Role.MEMBER)
    client.force_login(bob)
    client.post(f"/teams/{team_b.id}/switch/")
    services.member_remove(membership=team_b.memberships.get(user=bob), actor_role=Role.OWNER)
    response = client.get("/")
    assert response["Location"] == f"/teams/{team_a.id}/"
    assert _nav_team(client) == "Team A"


def test_deleting_a_team_takes_its_projects_jobs_uploads_and_files(client, alice, bob, team_a):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from tests.helpers import make_dataset, signed_in
    from webapp.jobs.models import Job, JobState
    from webapp.projects.models import Project
    from webapp.uploads.models import Upload
    from webapp.uploads.services import part_path, upload_create

    project = Project.objects.create(team=team_a, name="Vision")
    dataset = make_dataset(project)
    default_storage.save(f"{dataset.storage_prefix}/index.json", ContentFile(b"{}"))
    queued = Job.objects.create(project=project, kind="probe", queue="optimize", state=JobState.QUEUED)
    arriving = upload_create(team=team_a, user=alice, filename="big.zip", length=10, metadata={"project": str(project.id)})
    assert part_path(arriving).exists()

    assert signed_in(bob).get(f"/teams/{team_a.id}/delete/").status_code == 403  # members may not
    page = signed_in(alice).get(f"/teams/{team_a.id}/delete/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-testid="delete-projects">1' in text and 'data-testid="delete-uploads">1' in text
    assert f"#{queued.id}</a>" in text  # listed as one that will be cancelled

    client.force_login(alice)
    assert client.delete(f"/api/v1/teams/{team_a.id}/").status_code == 204
    for table in (Team, Membership, Project, Job, Upload):
        assert not table.objects.filter(**({"name": "Team A"} if table is Team else {})).exists(), table.__name__
    assert not default_storage.exists(dataset.storage_prefix) and not part_path(arriving).exists()
