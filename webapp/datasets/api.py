from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.access import Action
from webapp.core.serializers import StrictSerializer
from webapp.core.throttles import CreateRateThrottle
from webapp.datasets import services
from webapp.core.modality import Modality
from webapp.datasets.models import AUTO_MODALITY, Dataset, DatasetItem, Labelling
from webapp.datasets.selectors import dataset_for_user, datasets_of_project, items_of_dataset
from webapp.jobs.kinds import submission_key
from webapp.projects.selectors import project_for_user
from webapp.uploads.models import Upload


class DatasetSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True)
    error = serializers.SerializerMethodField()
    image_count = serializers.SerializerMethodField(help_text="Its images; 0 for a text dataset (see row_count).")
    row_count = serializers.SerializerMethodField(help_text="A text dataset's rows; 0 for an image dataset.")

    class Meta:
        model = Dataset
        fields = [
            "id", "project", "name", "version", "description", "state", "error", "archive_name", "archive_sha256",
            "import_job", "modality", "columns", "val_fraction", "seed", "labelling", "created_at", "imported_at",
            "size_bytes", "image_count", "row_count", "classes",
        ]
        read_only_fields = fields

    def get_image_count(self, dataset: Dataset) -> int:
        return 0 if dataset.is_text else dataset.image_count

    def get_row_count(self, dataset: Dataset) -> int:
        return dataset.image_count if dataset.is_text else 0

    def get_error(self, dataset: Dataset) -> str:
        return dataset.import_job.error if dataset.state == "failed" and dataset.import_job else ""


class DatasetCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    upload = serializers.UUIDField(help_text="The id of a finished tus upload (POST /api/v1/uploads/).")
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False, allow_blank=True, help_text="Of the archive, to verify it arrived intact.")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    val_fraction = serializers.FloatField(required=False, default=0.2, min_value=0.0, max_value=0.9)
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=services.SEED_MAX)
    labelling = serializers.ChoiceField(
        choices=Labelling.choices, required=False, default=Labelling.AUTO,
        help_text="auto: class folders make a labelled dataset, loose images an unlabelled one (calibration only); "
                  "unlabelled: every image in the archive, its folders not taken as classes.")
    modality = serializers.ChoiceField(
        choices=[AUTO_MODALITY, *Modality.values], required=False, default=AUTO_MODALITY,
        help_text="auto: a .csv, .tsv, .jsonl or .json file, or a zip of them only, is text; anything else images.")
    columns = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=100), required=False, default=dict,
        help_text="A text upload's column names, e.g. {\"text\": \"review\", \"label\": \"stars\"}; roles: text, "
                  "text_pair, label, split (defaults: those names).")


class DatasetItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetItem
        fields = ["index", "path", "label", "split", "width", "height", "mode", "format"]


class ProjectDatasetsView(APIView):
    serializer_class = DatasetSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"


    @extend_schema(responses=DatasetSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = project_for_user(request.user, project_id, Action.VIEW)
        return Response(DatasetSerializer(datasets_of_project(project.id), many=True).data)

    @extend_schema(request=DatasetCreateSerializer, responses={201: DatasetSerializer}, summary="Import a finished upload as a dataset")
    def post(self, request: Request, project_id: int) -> Response:
        project = project_for_user(request.user, project_id, Action.WRITE)
        form = DatasetCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        upload = Upload.objects.filter(id=data["upload"], team=project.team, created_by=request.user).first()
        if upload is None:
            raise serializers.ValidationError({"upload": "No such upload."})
        dataset = services.dataset_create(
            project=project, user=request.user, name=data["name"], upload=upload, sha256=data.get("sha256", ""),
            description=data["description"], val_fraction=data["val_fraction"], seed=data["seed"],
            labelling=data["labelling"], modality=data["modality"], columns=data["columns"],
            idempotency_key=submission_key(request),
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(APIView):
    serializer_class = DatasetSerializer

    def get(self, request: Request, dataset_id: int) -> Response:
        return Response(DatasetSerializer(dataset_for_user(request.user, dataset_id, Action.VIEW)).data)

    @extend_schema(responses={204: None, 400: None}, summary="Delete a dataset (refused while a job uses it)")
    def delete(self, request: Request, dataset_id: int) -> Response:
        services.dataset_delete(dataset=dataset_for_user(request.user, dataset_id, Action.WRITE))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetImportView(APIView):
    serializer_class = DatasetSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"

    @extend_schema(request=None, summary="Try a failed import again")
    def post(self, request: Request, dataset_id: int) -> Response:
        dataset = dataset_for_user(request.user, dataset_id, Action.WRITE)
        services.dataset_import_start(dataset=dataset, user=request.user, idempotency_key=submission_key(request))
        dataset.refresh_from_db()
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_202_ACCEPTED)


class DatasetReportView(APIView):
    @extend_schema(responses={200: dict}, summary="The validation report of an imported dataset")
    def get(self, request: Request, dataset_id: int) -> Response:
        dataset = dataset_for_user(request.user, dataset_id, Action.VIEW)
        if dataset.state != "ready":
            raise Http404("The dataset has no report until its import succeeds.")
        return Response(dataset.report)


class ItemPages(PageNumberPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"


class DatasetItemsView(APIView):
    serializer_class = DatasetItemSerializer

    @extend_schema(
        parameters=[OpenApiParameter("label", str), OpenApiParameter("split", str), OpenApiParameter("page", int)],
        responses=DatasetItemSerializer(many=True),
    )
    def get(self, request: Request, dataset_id: int) -> Response:
        dataset = dataset_for_user(request.user, dataset_id, Action.VIEW)
        if dataset.is_text:
            raise Http404("A text dataset holds rows, not images: its report has a sample of rows per class.")
        items = items_of_dataset(dataset, label=request.query_params.get("label", ""), split=request.query_params.get("split", ""))
        pages = ItemPages()
        page = pages.paginate_queryset(items, request, view=self)
        return pages.get_paginated_response(DatasetItemSerializer(page, many=True).data)
