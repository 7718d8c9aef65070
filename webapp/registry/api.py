from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.access import Action
from webapp.datasets.selectors import chosen_dataset
from webapp.jobs.api import JobSerializer
from webapp.core.exceptions import Conflict
from webapp.core.serializers import StrictSerializer
from webapp.core.throttles import CreateRateThrottle
from webapp.jobs.kinds import KINDS, params_from_body, submission_key
from webapp.projects.selectors import project_for_user
from webapp.registry import services
from webapp.registry.models import Artifact, Format, Model, Scores
from webapp.registry.selectors import artifact_for_user, chosen_init_artifact, model_for_user, models_of_project
from webapp.uploads.models import Upload


class ArtifactSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = [
            "id", "model", "state", "error", "origin", "format", "precision", "parent", "job", "source_names",
            "architecture", "num_classes", "files", "primary", "sha256", "size_bytes", "inspection", "metrics",
            "created_at", "ready_at",
        ]
        read_only_fields = fields

    def get_error(self, artifact: Artifact) -> str:
        return artifact.job.error if artifact.state == "failed" and artifact.job else ""


class ModelSerializer(serializers.ModelSerializer):
    artifacts = ArtifactSerializer(many=True, read_only=True)

    class Meta:
        model = Model
        fields = ["id", "project", "name", "modality", "description", "labels", "labels_source", "labels_confirmed",
                  "scores", "output_index", "preprocessing", "created_at", "updated_at", "artifacts"]
        read_only_fields = ["id", "project", "modality", "labels_source", "created_at", "updated_at", "artifacts"]


class ModelUploadSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, help_text="A new model, or another artifact of an existing one.")
    uploads = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=2,
                                    help_text="Finished tus uploads: one file, a zip, or an IR's .xml and .bin.")
    format = serializers.ChoiceField(choices=Format.choices, required=False, allow_blank=True, default="")
    architecture = serializers.CharField(required=False, allow_blank=True, default="", help_text="For a state_dict: e.g. resnet18.")
    num_classes = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                           max_value=services.NUM_CLASSES_MAX)
    labels = serializers.ListField(child=serializers.CharField(), required=False, default=list)


class ModelUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    labels = serializers.ListField(child=serializers.CharField(), required=False, help_text="Giving them confirms them.")
    labels_confirmed = serializers.BooleanField(required=False, help_text="true: confirm the labels read from the model's file as they are.")
    scores = serializers.ChoiceField(choices=Scores.choices, required=False, help_text="What the scores output gives.")
    output_index = serializers.IntegerField(required=False, min_value=0, help_text="The output that holds the class scores.")
    preprocessing = serializers.DictField(required=False, help_text=(
        "The settings to change; the others stay. input_size [h, w]; fit crop|stretch; crop 0.25-1 (the share "
        "kept); resize bilinear|bicubic|nearest; value_range 0-1|0-255; mean, std (one number or three, in the "
        "value range's units); color RGB|BGR; layout NCHW|NHWC."))


class ProjectModelsView(APIView):
    serializer_class = ModelSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"


    @extend_schema(responses=ModelSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = project_for_user(request.user, project_id, Action.VIEW)
        return Response(ModelSerializer(models_of_project(project.id), many=True).data)

    @extend_schema(request=ModelUploadSerializer, responses={201: ArtifactSerializer}, summary="Register uploaded model files")
    def post(self, request: Request, project_id: int) -> Response:
        project = project_for_user(request.user, project_id, Action.WRITE)
        form = ModelUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        uploads = list(Upload.objects.filter(id__in=data["uploads"], team=project.team, created_by=request.user))
        if len(uploads) != len(set(data["uploads"])):
            raise serializers.ValidationError({"uploads": "No such upload."})
        artifact = services.model_upload(
            project=project, user=request.user, name=data["name"], uploads=uploads, declared_format=data["format"],
            architecture=data["architecture"], num_classes=data["num_classes"], labels=data["labels"],
            idempotency_key=submission_key(request),
        )
        return Response(ArtifactSerializer(artifact).data, status=status.HTTP_201_CREATED)


class ModelDetailView(APIView):
    serializer_class = ModelSerializer

    def get(self, request: Request, model_id: int) -> Response:
        return Response(ModelSerializer(model_for_user(request.user, model_id, Action.VIEW)).data)

    @extend_schema(request=ModelUpdateSerializer, summary="Edit a model's name, labels and preprocessing")
    def patch(self, request: Request, model_id: int) -> Response:
        model = model_for_user(request.user, model_id, Action.WRITE)
        form = ModelUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.model_update(model=model, **form.validated_data)
        return Response(ModelSerializer(model).data)

    @extend_schema(responses={204: None}, summary="Delete a model and its artifacts (refused while a job uses one)")
    def delete(self, request: Request, model_id: int) -> Response:
        services.model_delete(model=model_for_user(request.user, model_id, Action.WRITE))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ArtifactDetailView(APIView):
    serializer_class = ArtifactSerializer

    def get(self, request: Request, artifact_id: int) -> Response:
        return Response(ArtifactSerializer(artifact_for_user(request.user, artifact_id, Action.VIEW)).data)

    @extend_schema(responses={204: None}, summary="Delete an artifact (refused while a job uses it)")
    def delete(self, request: Request, artifact_id: int) -> Response:
        services.artifact_delete(artifact=artifact_for_user(request.user, artifact_id, Action.WRITE))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectTrainView(APIView):
    serializer_class = JobSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"

    @extend_schema(request=KINDS["train"].serializer, responses={201: JobSerializer}, summary="Train an image or text classifier (a job on the train queue)")
    def post(self, request: Request, project_id: int) -> Response:
        project = project_for_user(request.user, project_id, Action.WRITE)
        params = params_from_body(request.data, "train")
        dataset = chosen_dataset(request.user, params)
        init = chosen_init_artifact(request.user, params)
        job = services.model_train(project=project, user=request.user, dataset=dataset, params=params, init=init,
                                   idempotency_key=submission_key(request))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class ArtifactDownloadView(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes}, summary="Download an artifact (IR: a zip)")
    def get(self, request: Request, artifact_id: int):
        artifact = artifact_for_user(request.user, artifact_id, Action.VIEW)
        if artifact.state != "ready":
            raise Conflict("This artifact is not ready to download.")
        try:
            return services.artifact_download(request, artifact)
        except services.FilesMissing as missing:
            return Response({"detail": str(missing)}, status=status.HTTP_410_GONE)
