"""REST for converting and quantizing an artifact (jobs); measuring is in measure_api."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.access import Action
from webapp.datasets.selectors import chosen_dataset
from webapp.jobs.api import JobSerializer
from webapp.core.throttles import CreateRateThrottle
from webapp.jobs.kinds import KINDS, params_from_body, submission_key
from webapp.optimize import services
from webapp.registry.selectors import artifact_for_user


class ArtifactConvertView(APIView):
    serializer_class = JobSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"

    @extend_schema(request=KINDS["convert"].serializer, responses={201: JobSerializer}, summary="Convert to OpenVINO IR (a job)")
    def post(self, request: Request, artifact_id: int) -> Response:
        artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
        params = {**params_from_body(request.data, "convert"), "artifact": artifact.id}
        dataset = chosen_dataset(request.user, params) if params.get("dataset") else None  # else generated inputs
        job = services.artifact_convert(artifact=artifact, user=request.user, params=params, dataset=dataset,
                                        idempotency_key=submission_key(request))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class ArtifactQuantizeView(APIView):
    serializer_class = JobSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"

    @extend_schema(request=KINDS["quantize"].serializer, responses={201: JobSerializer},
                   summary="Quantize to INT8 with NNCF on a dataset (a job; QAT goes to the train queue)")
    def post(self, request: Request, artifact_id: int) -> Response:
        artifact = artifact_for_user(request.user, artifact_id, Action.WRITE)
        params = {**params_from_body(request.data, "quantize"), "artifact": artifact.id}
        dataset = chosen_dataset(request.user, params)
        job = services.artifact_quantize(artifact=artifact, user=request.user, dataset=dataset, params=params,
                                         idempotency_key=submission_key(request))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)
