"""REST for API tokens: issue one for a username and password (`vintner login`), revoke the one
presented (`vintner logout`), list and revoke one's own. Signing in here is rate limited per
address and locked out per username and address after wrong passwords (django-axes), as the
sign-in page is."""

from django.contrib.auth import authenticate
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.core import tokens
from webapp.core.models import ApiToken
from webapp.core.serializers import StrictSerializer
from webapp.core.throttles import CreateRateThrottle, lockout_seconds, lockout_text


class TokenIssueSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    name = serializers.CharField(max_length=100, required=False, default="", allow_blank=True,
                                 help_text="To tell your tokens apart, e.g. the machine it is for.")
    days = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1, max_value=tokens.MAX_DAYS,
                                    help_text="How long it lasts (default: the site's API_TOKEN_DAYS).")


class IssuedTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The key: shown this once.")
    id = serializers.IntegerField()
    name = serializers.CharField()
    expires_at = serializers.DateTimeField()


class TokenSerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField(help_text="Whether this request was made with it.")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "current"]
        read_only_fields = fields

    def get_current(self, token: ApiToken) -> bool:
        return token == self.context.get("auth")


class TokenView(APIView):
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "login"

    def get_permissions(self):
        # POST is how one signs in: open to anyone with a password; DELETE needs the caller known
        return [permissions.IsAuthenticated()] if self.request.method == "DELETE" else []

    @extend_schema(request=TokenIssueSerializer, responses={200: IssuedTokenSerializer}, auth=[],
                   summary="Issue a new API token for a username and password")
    def post(self, request: Request) -> Response:
        form = TokenIssueSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            if getattr(request._request, "axes_locked_out", False):  # django-axes refused to check the password
                request._request.axes_locked_out = False  # answered here, in JSON, not by its middleware's page
                seconds = lockout_seconds(request._request)
                raise Throttled(wait=seconds, detail=lockout_text(seconds))
            raise serializers.ValidationError({"non_field_errors": ["Unable to log in with provided credentials."]})
        token, key = tokens.token_issue(user=user, name=data["name"], days=data["days"])
        return Response({"token": key, "id": token.id, "name": token.name, "expires_at": token.expires_at})

    @extend_schema(request=None, responses={204: None}, summary="Revoke the token this request is made with")
    def delete(self, request: Request) -> Response:
        if not isinstance(request.auth, ApiToken):
            raise serializers.ValidationError(
                {"non_field_errors": ["Send the token to revoke as Authorization: Token <key>; revoke others by id "
                                      "at /api/v1/auth/tokens/<id>/."]})
        tokens.token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenListView(APIView):
    serializer_class = TokenSerializer

    @extend_schema(responses=TokenSerializer(many=True), summary="Your API tokens")
    def get(self, request: Request) -> Response:
        return Response(TokenSerializer(tokens.tokens_of_user(request.user), many=True,
                                        context={"auth": request.auth}).data)


class TokenDetailView(APIView):
    serializer_class = TokenSerializer

    @extend_schema(responses={204: None}, summary="Revoke one of your API tokens")
    def delete(self, request: Request, token_id: int) -> Response:
        tokens.token_revoke(token=get_object_or_404(tokens.tokens_of_user(request.user), id=token_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
