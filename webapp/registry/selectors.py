from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet

from webapp.access import Action, get_for_user
from webapp.core.numbers import whole_number
from webapp.jobs.models import ACTIVE_STATES, Job
from webapp.registry.models import Artifact, Model


def model_for_user(user, model_id: int, action: Action) -> Model:
    return get_for_user(user, Model.objects.select_related("project__team"), model_id, action, team_lookup="project__team")


def artifact_for_user(user, artifact_id: int, action: Action) -> Artifact:
    artifacts = Artifact.objects.select_related("model__project__team", "job", "parent")
    return get_for_user(user, artifacts, artifact_id, action, team_lookup="model__project__team")


def chosen_init_artifact(user, params: dict) -> Artifact | None:
    """The artifact a training run's parameters start from, if the user may see it (another
    team's: 404); None when none is named, a field error when it is no id."""
    value = params.get("init_artifact")
    if value in (None, ""):
        return None
    chosen = whole_number(value, low=1)
    if chosen is None:
        raise ValidationError({"params.init_artifact": "Choose an artifact to fine-tune from by its id, or none."})
    return artifact_for_user(user, chosen, Action.VIEW)


def models_of_project(project_id: int) -> QuerySet[Model]:
    return Model.objects.filter(project_id=project_id).prefetch_related("artifacts__job")


# What a row of an artifact shows, with its job's state: a list page reads these columns only
# (the graph, up to 1.7 MB, is never read but by the graph page: Artifact.objects defers it).
ARTIFACT_ROW = ("id", "model_id", "origin", "format", "precision", "parent_id", "ready_at", "size_bytes", "created_at",
                "job_id", "job__id", "job__state", "job__progress", "job__stage")


MODELS_PER_PAGE = 25


def model_rows_of_project(project_id: int) -> list[Model]:
    """The project page's model list, in two queries whatever the models hold: each model with its
    artifact count and its newest artifact (row columns and its job's state), which stands for it."""
    artifacts = Artifact.objects.select_related("job").only(*ARTIFACT_ROW).order_by("created_at", "id")
    models = list(Model.objects.filter(project_id=project_id).only("id", "name", "project_id")
                  .prefetch_related(Prefetch("artifacts", queryset=artifacts)))
    for model in models:
        made = model.artifacts.all()
        model.artifact_count, model.latest = len(made), (made[len(made) - 1] if made else None)
    return models


def artifacts_of_model(model: Model) -> QuerySet[Artifact]:
    """The model page's artifacts: their row columns, metrics (the quantization figures) and
    inspection (the parameter count)."""
    return model.artifacts.select_related("job").only(*ARTIFACT_ROW, "metrics", "inspection").order_by("created_at", "id")


def active_jobs_using(artifacts: list[Artifact]) -> list[Job]:
    """Jobs not yet finished that read one of these artifacts, in whichever project of the team
    they run (not only the model's own), an upload's inspection included."""
    return list(Job.objects.filter(reads__artifact__in=artifacts, state__in=ACTIVE_STATES).distinct())


def active_jobs_of_model(model: Model) -> list[Job]:
    """Jobs not yet finished that read one of the model's artifacts (from any project of the
    team) or make one for it (a training run, a conversion)."""
    reads_or_makes = Q(reads__artifact__model=model) | Q(model=model)
    return list(Job.objects.filter(reads_or_makes, state__in=ACTIVE_STATES).distinct())


def training_runs_of_model(model: Model) -> QuerySet[Job]:
    """Its training runs, oldest first, by the relation: they stay its runs when it is renamed."""
    return model.jobs.filter(kind="train").order_by("created_at", "id")


def lineage(artifacts: list[Artifact]) -> dict:
    """The model's artifacts as a graph laid out in columns by generation (uploaded or trained
    first, then converted, then quantized…), for the model page to draw as SVG."""
    by_id = {artifact.id: artifact for artifact in artifacts}
    depth: dict[int, int] = {}

    def generation(artifact: Artifact) -> int:
        if artifact.id not in depth:
            parent = by_id.get(artifact.parent_id)
            depth[artifact.id] = generation(parent) + 1 if parent else 0
        return depth[artifact.id]

    columns: dict[int, list[Artifact]] = {}
    for artifact in artifacts:
        columns.setdefault(generation(artifact), []).append(artifact)
    width, height, gap_x, gap_y = 180, 56, 60, 20
    nodes = {
        artifact.id: {"artifact": artifact, "x": column * (width + gap_x), "y": row * (height + gap_y)}
        for column, members in columns.items()
        for row, artifact in enumerate(members)
    }
    edges = [
        {"x1": nodes[a.parent_id]["x"] + width, "y1": nodes[a.parent_id]["y"] + height / 2,
         "x2": nodes[a.id]["x"], "y2": nodes[a.id]["y"] + height / 2}
        for a in artifacts
        if a.parent_id in nodes
    ]
    return {
        "nodes": list(nodes.values()),
        "edges": edges,
        "node_width": width,
        "node_height": height,
        "width": max((n["x"] for n in nodes.values()), default=0) + width,
        "height": max((n["y"] for n in nodes.values()), default=0) + height,
    }
