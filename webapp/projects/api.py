from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.access import Action, authorize
from webapp.core.numbers import whole_number
from webapp.core.serializers import StrictModelSerializer, StrictSerializer
from webapp.projects import services
from webapp.projects.models import Project
from webapp.projects.selectors import project_for_user, projects_for_user
from webapp.teams.models import Team


class ProjectSerializer(StrictModelSerializer):
    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all())

    class Meta:
        model = Project
        fields = ["id", "team", "name", "description", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        # The service checks names (case-insensitively) after authorization, and answers on "name".
        validators = []


class ProjectUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class ProjectListView(APIView):
    serializer_class = ProjectSerializer

    @extend_schema(responses=ProjectSerializer(many=True))  # a list, not one object
    def get(self, request: Request) -> Response:
        team = request.query_params.get("team")
        team_id = whole_number(team, low=1) if team else None
        if team and team_id is None:
            raise serializers.ValidationError({"team": "The id of one of your teams."})
        projects = projects_for_user(request.user, team_id=team_id)
        return Response(ProjectSerializer(projects, many=True).data)

    def post(self, request: Request) -> Response:
        # A JSON list or string has no .get() (it was a 500): the serializer refuses it below.
        team_id = whole_number(request.data.get("team"), low=1) if isinstance(request.data, dict) else None
        # Check membership before validating, so a foreign team id answers 404 like everywhere else.
        if team_id is not None:
            authorize(request.user, team_id, Action.WRITE)
        serializer = ProjectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # The team the id resolved to, however it was spelt (5.0, " 5"): the check above only saw digits.
        authorize(request.user, data["team"].id, Action.WRITE)
        project = services.project_create(
            team=data["team"], creator=request.user, name=data["name"], description=data.get("description", "")
        )
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    serializer_class = ProjectSerializer

    def get(self, request: Request, project_id: int) -> Response:
        return Response(ProjectSerializer(project_for_user(request.user, project_id, Action.VIEW)).data)

    def patch(self, request: Request, project_id: int) -> Response:
        project = project_for_user(request.user, project_id, Action.WRITE)
        serializer = ProjectUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_update(project=project, **serializer.validated_data)
        return Response(ProjectSerializer(project).data)

    def delete(self, request: Request, project_id: int) -> Response:
        services.project_delete(project=project_for_user(request.user, project_id, Action.MANAGE))
        return Response(status=status.HTTP_204_NO_CONTENT)
