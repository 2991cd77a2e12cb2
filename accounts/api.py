"""API token endpoints: issue one from a signed-in session, revoke the one in use.

Kept in ``accounts`` (which owns tokens); ``kreo/urls.py`` serves them in the
``api`` namespace beside the projects API.
"""

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import api_tokens


class TokenScheme(KnoxTokenScheme):
    """The schema's token scheme, as knox's: ours only adds checks."""

    target_class = "accounts.api_tokens.TokenAuthentication"


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)
    expiry = serializers.DateTimeField(read_only=True)


class TokenCreateView(APIView):
    """Issue an API token to a user signed in to the site (shown once)."""

    authentication_classes = [SessionAuthentication]

    @extend_schema(
        request=None,
        responses={
            201: TokenSerializer,
            403: OpenApiResponse(description="Not signed in, or no CSRF token."),
        },
    )
    def post(self, request):
        instance, token = api_tokens.token_create(actor=request.user, request=request)
        return Response(
            {"token": token, "expiry": instance.expiry}, status=status.HTTP_201_CREATED
        )


class TokenRevokeView(APIView):
    """Revoke the token this request authenticated with."""

    @extend_schema(
        request=None,
        responses={
            204: None,
            401: OpenApiResponse(description="No valid token."),
        },
    )
    def post(self, request):
        if isinstance(request.auth, AuthToken):
            api_tokens.token_revoke_current(
                actor=request.user, token=request.auth, request=request
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
