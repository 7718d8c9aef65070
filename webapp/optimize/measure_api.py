"""REST for measuring and delivering: benchmark and evaluate an artifact (jobs), compare a model's
variants, and the deployment snippet of an IR."""

import math

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.access import Action
from webapp.core.numbers import whole_number
from webapp.datasets.selectors import chosen_dataset
from webapp.jobs.api import JobSerializer
from webapp.core.throttles import CreateRateThrottle
from webapp.jobs.kinds import KINDS, params_from_body, submission_key
from webapp.optimize import services
from webapp.optimize.comparison import DEFAULT_MAX_DROP, METRICS, compare
from webapp.optimize.deploy import snippet
from webapp.registry.selectors import artifact_for_user, model_for_user


class ArtifactBenchmarkView(APIView):
    serializer_class = JobSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"

    @extend_schema(request=KINDS["benchmark"].serializer, responses={201: JobSerializer}, summary="Benchmark an artifact (a job)")
    def post(self, request: Request, artifact_id: int) -> Response:
        artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
        job = services.artifact_benchmark(artifact=artifact, user=request.user, params=params_from_body(request.data, "benchmark"),
                                          idempotency_key=submission_key(request))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class ArtifactEvaluateView(APIView):
    serializer_class = JobSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"

    @extend_schema(request=KINDS["evaluate"].serializer, responses={201: JobSerializer}, summary="Evaluate an artifact on a dataset split (a job)")
    def post(self, request: Request, artifact_id: int) -> Response:
        artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
        params = params_from_body(request.data, "evaluate")
        dataset = chosen_dataset(request.user, params, missing="Choose a dataset to evaluate on.")
        job = services.artifact_evaluate(artifact=artifact, user=request.user, dataset=dataset, params=params,
                                         idempotency_key=submission_key(request))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class ModelCompareView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("dataset", int, description="Top-1 from evaluations on this dataset"),
                    OpenApiParameter("split", str, description="…and this split (default val)"),
                    OpenApiParameter("max_drop", float, description="Top-1 points a candidate may lose (default 1)")],
        responses={200: dict}, summary="Every artifact of a model side by side, with the best for each goal",
    )
    def get(self, request: Request, model_id: int) -> Response:
        model = model_for_user(request.user, model_id, Action.VIEW)
        dataset_id, split, max_drop = comparison_query(request.query_params)
        return Response(compare(model, dataset_id=dataset_id, split=split, max_drop=max_drop,
                                metric=comparison_metric(request.query_params)).as_dict())


class ArtifactSnippetView(APIView):
    @extend_schema(responses={(200, "text/x-python"): str}, summary="A Python program that runs the IR on an image")
    def get(self, request: Request, artifact_id: int) -> HttpResponse:
        artifact = artifact_for_user(request.user, artifact_id, Action.VIEW)
        try:
            text = snippet(artifact)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        return HttpResponse(text, content_type="text/x-python; charset=utf-8")


def comparison_metric(query) -> str:
    """What the drop is measured in: accuracy (top-1, the default) or macro_f1."""
    metric = query.get("metric") or "accuracy"
    if metric not in METRICS:
        raise ValidationError({"metric": "One of accuracy, macro_f1."})
    return metric


def comparison_query(query) -> tuple[int | None, str, float]:
    """dataset, split and max_drop (points in the query, a fraction here) from a query string."""
    dataset = whole_number(query["dataset"], low=1) if query.get("dataset") else None
    if query.get("dataset") and dataset is None:
        raise ValidationError({"dataset": "The id of a dataset."})
    try:
        max_drop = float(query["max_drop"]) / 100 if query.get("max_drop") else DEFAULT_MAX_DROP
    except ValueError:
        max_drop = math.nan
    if not math.isfinite(max_drop):  # inf would reach the JSON answer, which cannot hold it
        raise ValidationError({"max_drop": "A number of top-1 points."})
    split = query.get("split") or "val"
    if split not in ("val", "test", "train"):
        raise ValidationError({"split": "One of val, test, train."})
    return dataset, split, max(0.0, max_drop)
