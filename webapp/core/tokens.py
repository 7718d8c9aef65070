"""The API token of DRF's authtoken: one per user, issued for a username and password, revoked
by its holder (`vintner logout`). One token per user means revoking it signs out every program
that holds it, on every machine: that is what a person who logs out wants of a leaked token too."""

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response


class TokenView(ObtainAuthToken):
    def get_permissions(self):
        # POST is how one signs in: open to anyone with a password; DELETE needs the caller known
        return [permissions.IsAuthenticated()] if self.request.method == "DELETE" else []

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
