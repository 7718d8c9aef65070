from django.core.exceptions import ValidationError
from django.db import transaction

from webapp.core.broadcast import broadcast, project_group
from webapp.projects.deletion import projects_delete
from webapp.projects.models import Project
from webapp.teams.models import Team


def _clean_name(team: Team, name: str, *, exclude_id: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A project needs a name."})
    if team.projects.filter(name__iexact=name).exclude(id=exclude_id).exists():
        raise ValidationError({"name": f"{team.name} already has a project called “{name}”."})
    return name


@transaction.atomic
def project_create(*, team: Team, creator, name: str, description: str = "") -> Project:
    name = _clean_name(team, name)
    return Project.objects.create(team=team, name=name, description=description.strip(), created_by=creator)


@transaction.atomic
def project_update(*, project: Project, name: str | None = None, description: str | None = None) -> Project:
    if name is not None:
        project.name = _clean_name(project.team, name, exclude_id=project.id)
    if description is not None:
        project.description = description.strip()
    project.save(update_fields=["name", "description", "updated_at"])
    broadcast(
        project_group(project.id),
        {"type": "project.updated", "project": {"id": project.id, "name": project.name, "description": project.description}},
    )
    return project


def project_delete(*, project: Project) -> None:
    """Its jobs cancelled, its rows and files gone (webapp/projects/deletion.py)."""
    projects_delete([project.id])
