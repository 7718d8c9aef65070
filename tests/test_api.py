"""The REST API for scripts: token auth, the OpenAPI schema and its docs page (served locally),
and validation answered as 400 with a message per field."""

import json
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
import yaml
from django.utils import timezone

from tests.conftest import PASSWORD
from webapp.core.models import ApiToken
from webapp.core.tokens import token_issue
from webapp.projects.models import Project


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Riesling", created_by=alice)


def _post_json(client, url: str, data: dict, **extra):
    return client.post(url, json.dumps(data), content_type="application/json", **extra)


# --- Token auth ----------------------------------------------------------------------------


def _token_row(key: str) -> ApiToken | None:
    return ApiToken.objects.filter(digest=ApiToken.digest_of(key)).first()


def test_it_issues_a_named_expiring_token_for_username_and_password(client, alice):
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD, "name": "laptop", "days": 7})
    assert response.status_code == 200
    token = _token_row(response.json()["token"])
    assert token.user == alice and token.name == "laptop" and response.json()["id"] == token.id
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)
    assert token.prefix == response.json()["token"][:8] and response.json()["token"] not in str(vars(token))


def test_it_refuses_a_token_for_a_wrong_password(client, alice):
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 400
    assert "token" not in response.json()
    assert not ApiToken.objects.exists()


def test_its_holder_revokes_the_token_and_it_signs_in_no_more(client, alice, team_a):
    token = client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}).json()["token"]
    other = client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}).json()["token"]
    assert client.delete("/api/v1/auth/token/").status_code == 401  # nobody to revoke it for
    assert _token_row(token)
    assert client.delete("/api/v1/auth/token/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 204
    assert _token_row(token) is None and _token_row(other)  # only the one presented
    assert client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 401
    assert client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Token {other}").status_code == 200


def test_an_expired_token_is_a_401_that_says_so(client, alice, team_a):
    token, key = token_issue(user=alice)
    ApiToken.objects.filter(id=token.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    assert "Team A" not in response.content.decode()


def test_its_owner_lists_and_revokes_tokens_and_nobody_elses(client, alice, bob, team_a):
    mine, key = token_issue(user=alice, name="ci")
    second, _ = token_issue(user=alice, name="laptop")
    bobs, bob_key = token_issue(user=bob)
    listed = client.get("/api/v1/auth/tokens/", HTTP_AUTHORIZATION=f"Token {key}").json()
    assert [(t["name"], t["current"]) for t in listed] == [("laptop", False), ("ci", True)]
    assert listed[1]["last_used_at"] is not None and "digest" not in listed[1]
    assert client.delete(f"/api/v1/auth/tokens/{bobs.id}/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 404
    assert ApiToken.objects.filter(id=bobs.id).exists()
    assert client.delete(f"/api/v1/auth/tokens/{second.id}/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 204
    assert list(ApiToken.objects.filter(user=alice)) == [mine]


def test_the_account_page_issues_lists_and_revokes_tokens(client, alice, bob):
    bobs, _ = token_issue(user=bob)
    client.force_login(alice)
    page = client.post("/accounts/tokens/", {"name": "laptop", "days": "30"})
    token = ApiToken.objects.get(user=alice)
    assert page.status_code == 200 and token.name == "laptop"
    assert token.prefix in page.content.decode() and "not shown again" in page.content.decode()
    assert "laptop" in client.get("/accounts/tokens/").content.decode()
    assert client.post(f"/accounts/tokens/{bobs.id}/revoke/").status_code == 404
    assert client.post(f"/accounts/tokens/{token.id}/revoke/").status_code == 302
    assert not ApiToken.objects.filter(user=alice).exists() and ApiToken.objects.filter(id=bobs.id).exists()


def test_it_lists_teams_for_a_token(client, alice, team_a, team_c):
    token = client.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}).json()["token"]
    response = client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert [(t["name"], t["role"]) for t in response.json()] == [("Team A", "owner")]


def test_it_writes_with_a_token_and_no_csrf(alice, team_a):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = _post_json(client, "/api/v1/projects/", {"team": team_a.id, "name": "Scripted"},
                          HTTP_AUTHORIZATION=f"Token {token_issue(user=alice)[1]}")
    assert response.status_code == 201
    assert Project.objects.filter(team=team_a, name="Scripted", created_by=alice).exists()


def test_it_answers_401_to_a_wrong_token(client, alice, team_a):
    token_issue(user=alice)
    response = client.get("/api/v1/teams/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "Team A" not in response.content.decode()


def test_it_answers_401_without_credentials(client, team_a):
    response = client.get("/api/v1/teams/")
    assert response.status_code == 401
    assert "Team A" not in response.content.decode()


# --- Schema and docs ---------------------------------------------------------------------------


def test_it_serves_the_openapi_schema(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/teams/", "/api/v1/projects/", "/api/v1/projects/{project_id}/"} <= set(schema["paths"])
    assert "post" in schema["paths"]["/api/v1/projects/"]


def test_it_serves_the_schema_as_json(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/teams/{team_id}/members/" in schema["paths"]


def test_it_documents_token_auth_in_the_schema(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    schemes = schema["components"]["securitySchemes"]
    assert any(s.get("type") == "apiKey" and s.get("name") == "Authorization" for s in schemes.values())


class _Assets(HTMLParser):
    """URLs that a page makes the browser fetch: script src, link href, img src."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self._in_script = True
            if attrs.get("src"):
                self.urls.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])
        elif tag == "img" and attrs.get("src"):
            self.urls.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_scripts.append(data)


def test_it_renders_the_docs_from_local_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    body = response.content.decode()
    assets = _Assets()
    assets.feed(body)
    assert any(url.endswith(".js") for url in assets.urls) and any(url.endswith(".css") for url in assets.urls)
    assert all(url.startswith("/static/") for url in assets.urls), assets.urls
    external = re.findall(r"https?://[^\s\"'<>)]+", body)
    assert external == [], external


def test_it_serves_the_docs_assets_itself(client):
    assets = _Assets()
    assets.feed(client.get("/api/docs/").content.decode())
    for url in assets.urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_it_points_the_docs_at_the_local_schema(client):
    body = client.get("/api/docs/").content.decode()
    assert '"/api/schema/"' in body


# --- Validation -------------------------------------------------------------------------------


def test_it_answers_400_per_field_for_an_empty_project_name(client, alice, team_a):
    client.force_login(alice)
    response = _post_json(client, "/api/v1/projects/", {"team": team_a.id, "name": ""})
    assert response.status_code == 400
    assert list(response.json()) == ["name"]
    assert not Project.objects.exists()


def test_it_answers_400_per_field_for_a_blank_project_name(client, alice, team_a):
    client.force_login(alice)
    response = _post_json(client, "/api/v1/projects/", {"team": team_a.id, "name": "   "})
    assert response.status_code == 400
    assert "name" in response.json()
    assert not Project.objects.exists()


@pytest.mark.parametrize("name", ["Riesling", "riesling", " RIESLING "])
def test_it_answers_400_per_field_for_a_duplicate_project_name(client, alice, team_a, project, name):
    client.force_login(alice)
    response = _post_json(client, "/api/v1/projects/", {"team": team_a.id, "name": name})
    assert response.status_code == 400
    assert list(response.json()) == ["name"]
    assert "already has a project" in response.json()["name"][0]
    assert Project.objects.count() == 1


def test_it_allows_the_same_project_name_in_another_team(client, charlie, team_c, project):
    client.force_login(charlie)
    response = _post_json(client, "/api/v1/projects/", {"team": team_c.id, "name": "Riesling"})
    assert response.status_code == 201
    assert Project.objects.filter(team=team_c, name="Riesling").exists()


def test_it_answers_400_per_field_when_renaming_onto_another_project(client, alice, team_a, project):
    other = Project.objects.create(team=team_a, name="Merlot")
    client.force_login(alice)
    response = client.patch(f"/api/v1/projects/{other.id}/", {"name": "riesling"}, content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()) == ["name"]
    other.refresh_from_db()
    assert other.name == "Merlot"


def test_it_answers_400_per_field_for_an_empty_name_on_edit(client, alice, project):
    client.force_login(alice)
    response = client.patch(f"/api/v1/projects/{project.id}/", {"name": ""}, content_type="application/json")
    assert response.status_code == 400
    assert "name" in response.json()
    project.refresh_from_db()
    assert project.name == "Riesling"


def test_it_answers_400_per_field_without_a_team(client, alice, team_a):
    client.force_login(alice)
    response = _post_json(client, "/api/v1/projects/", {"name": "Orphan"})
    assert response.status_code == 400
    assert "team" in response.json()
    assert not Project.objects.exists()


def test_it_answers_400_per_field_for_an_empty_team_name(client, alice, team_a):
    client.force_login(alice)
    response = client.patch(f"/api/v1/teams/{team_a.id}/", {"name": ""}, content_type="application/json")
    assert response.status_code == 400
    assert "name" in response.json()
    team_a.refresh_from_db()
    assert team_a.name == "Team A"


def test_it_answers_400_per_field_for_an_unknown_user(client, alice, team_a):
    client.force_login(alice)
    response = _post_json(client, f"/api/v1/teams/{team_a.id}/members/", {"user": "ghost"})
    assert response.status_code == 400
    assert "ghost" in response.json()["user"][0]
    assert team_a.memberships.count() == 2


# --- Another team's id ----------------------------------------------------------------------


def test_it_404s_creating_a_project_in_a_team_one_is_not_in(client, alice, team_a, team_c):
    client.force_login(alice)
    response = _post_json(client, "/api/v1/projects/", {"team": team_c.id, "name": "Intruder"})
    assert response.status_code == 404
    assert not Project.objects.exists()


def test_it_404s_a_foreign_team_before_validating_the_rest(client, alice, team_a, team_c):
    # An invalid name must not turn the answer into a 400 that confirms the team exists.
    client.force_login(alice)
    response = _post_json(client, "/api/v1/projects/", {"team": team_c.id, "name": ""})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "spell",
    [
        pytest.param(lambda pk: float(pk), id="float"),
        pytest.param(lambda pk: f" {pk}", id="leading-space"),
        pytest.param(lambda pk: f"{pk} ", id="trailing-space"),
        pytest.param(lambda pk: f"+{pk}", id="plus-sign"),
        pytest.param(lambda pk: str(pk), id="string"),
    ],
)
def test_it_404s_a_foreign_team_however_its_id_is_spelt(client, alice, team_a, team_c, spell):
    client.force_login(alice)
    response = _post_json(client, "/api/v1/projects/", {"team": spell(team_c.id), "name": "Intruder"})
    assert response.status_code == 404
    assert not Project.objects.filter(team=team_c).exists()


def test_it_404s_a_foreign_team_in_a_form_encoded_post(client, alice, team_a, team_c):
    client.force_login(alice)
    response = client.post("/api/v1/projects/", {"team": f"{team_c.id} ", "name": "Intruder"})
    assert response.status_code == 404
    assert not Project.objects.filter(team=team_c).exists()


def test_the_favicon_is_the_logo_served_from_this_server(client):
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].startswith("/static/img/vintner")
    assert response["Location"].endswith(".svg")  # the site's own file, no other host
    assert finders.find("img/vintner.svg")
