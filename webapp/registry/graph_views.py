"""The graph view of an OpenVINO IR or ONNX artifact: the page embeds the graph its inspection
recorded (workers.pipeline.graphs) and static/js/artifact_graph.js lays it out and draws it,
with the dagre library Vintner serves itself."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.access import Action
from webapp.registry.selectors import artifact_for_user


@login_required
@require_GET
def artifact_graph(request: HttpRequest, artifact_id: int) -> HttpResponse:
    artifact = artifact_for_user(request.user, artifact_id, Action.VIEW)
    graph = artifact.graph if artifact.state == "ready" else None
    if not isinstance(graph, dict) or not graph.get("nodes"):
        raise Http404("This artifact has no graph to show.")
    kinds = {"op": 0, "const": 0, "input": 0, "output": 0}
    for node in graph["nodes"]:
        kinds[node.get("kind", "op")] = kinds.get(node.get("kind", "op"), 0) + 1
    context = {
        "artifact": artifact,
        "model": artifact.model,
        "project": artifact.model.project,
        "team": artifact.model.project.team,
        "graph": graph,
        "kinds": kinds,
        "shown": len(graph["nodes"]),
        "node_count": graph.get("node_count", len(graph["nodes"])),
    }
    return render(request, "registry/artifact_graph.html", context)
