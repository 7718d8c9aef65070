from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.access import Action, authorize
from webapp.core.serializers import StrictModelSerializer, StrictSerializer
from webapp.teams import services
from webapp.teams.models import Membership, Role, Team
from webapp.teams.selectors import memberships_of, teams_for_user


class TeamSerializer(StrictModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["id", "name", "created_at", "role"]
        read_only_fields = ["id", "created_at", "role"]

    def get_role(self, team: Team) -> str | None:
        return team.memberships.filter(user=self.context["request"].user).values_list("role", flat=True).first()


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]
        read_only_fields = ["id", "username", "created_at"]


class MemberAddSerializer(StrictSerializer):
    user = serializers.CharField(help_text="Username or e-mail of an existing account.")
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class RoleSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class TeamListView(APIView):
    serializer_class = TeamSerializer

    @extend_schema(responses=TeamSerializer(many=True))  # a list, not one object
    def get(self, request: Request) -> Response:
        teams = teams_for_user(request.user)
        return Response(TeamSerializer(teams, many=True, context={"request": request}).data)

    def post(self, request: Request) -> Response:
        serializer = TeamSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        team = services.team_create(name=serializer.validated_data["name"], creator=request.user)
        return Response(TeamSerializer(team, context={"request": request}).data, status=status.HTTP_201_CREATED)


class TeamDetailView(APIView):
    serializer_class = TeamSerializer

    def get(self, request: Request, team_id: int) -> Response:
        authorize(request.user, team_id, Action.VIEW)
        return Response(TeamSerializer(get_object_or_404(Team, id=team_id), context={"request": request}).data)

    def patch(self, request: Request, team_id: int) -> Response:
        authorize(request.user, team_id, Action.MANAGE)
        serializer = TeamSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        team = services.team_rename(team=get_object_or_404(Team, id=team_id), name=serializer.validated_data["name"])
        return Response(TeamSerializer(team, context={"request": request}).data)

    def delete(self, request: Request, team_id: int) -> Response:
        authorize(request.user, team_id, Action.OWN)
        services.team_delete(team=get_object_or_404(Team, id=team_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(APIView):
    serializer_class = MembershipSerializer

    def get(self, request: Request, team_id: int) -> Response:
        authorize(request.user, team_id, Action.VIEW)
        team = get_object_or_404(Team, id=team_id)
        return Response(MembershipSerializer(memberships_of(team), many=True).data)

    def post(self, request: Request, team_id: int) -> Response:
        role = authorize(request.user, team_id, Action.MANAGE)
        serializer = MemberAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.member_add(
            team=get_object_or_404(Team, id=team_id),
            actor_role=role,
            identifier=serializer.validated_data["user"],
            role=serializer.validated_data["role"],
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    serializer_class = MembershipSerializer

    def patch(self, request: Request, team_id: int, membership_id: int) -> Response:
        role = authorize(request.user, team_id, Action.MANAGE)
        serializer = RoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = get_object_or_404(Membership, id=membership_id, team_id=team_id)
        services.member_set_role(membership=membership, actor_role=role, role=serializer.validated_data["role"])
        return Response(MembershipSerializer(membership).data)

    def delete(self, request: Request, team_id: int, membership_id: int) -> Response:
        role = authorize(request.user, team_id, Action.MANAGE)
        membership = get_object_or_404(Membership, id=membership_id, team_id=team_id)
        services.member_remove(membership=membership, actor_role=role)
        return Response(status=status.HTTP_204_NO_CONTENT)
