"""The OpenAPI schema (drf-spectacular), with every error an operation can answer.

The generic errors are derived from how each view is built (authentication,
path parameters, request body, renderers, throttles), so a new endpoint is
documented without anyone remembering to; errors only one view gives (409,
410, 503, ...) are declared on that view with ``extend_schema``. Every error
response gets its JSON body schema here.
"""

from drf_spectacular import openapi
from rest_framework import permissions, serializers

# What each generic error means, as the schema tells API clients.
ERROR_DESCRIPTIONS = {
    400: "The request is malformed or a field is invalid: an object naming each "
    "failing field with its messages, a list of messages, or a detail.",
    401: "No credentials, or a token that is unknown, expired or revoked "
    "(WWW-Authenticate: Token).",
    403: "Not allowed: the project role forbids it, a session request lacks its "
    "CSRF token, or the view needs a signed-in session.",
    404: "No such object, or the caller is not a member of its project.",
    406: "The Accept header names no type this endpoint can answer with.",
    413: "The body is larger than the limit (uploads: KREO_MAX_UPLOAD_BYTES; "
    "JSON: DATA_UPLOAD_MAX_MEMORY_SIZE, 2 MiB).",
    415: "The Content-Type is not one this endpoint reads.",
    429: "Too many requests from this account: wait for Retry-After seconds.",
}


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, for a person.")


def _error_schema_400() -> dict:
    return {
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [
                        {"type": "array", "items": {"type": "string"}},
                        {"type": "string"},
                    ]
                },
            },
            {"type": "array", "items": {"type": "string"}},
        ]
    }


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, with the errors each operation can answer."""

    def _generic_error_codes(self) -> set[int]:
        view = self.view
        codes = set()
        guarded = any(
            not issubclass(p, permissions.AllowAny) for p in view.permission_classes
        )
        if guarded:
            authenticators = view.get_authenticators()
            header = authenticators and authenticators[0].authenticate_header(None)
            codes.add(401 if header else 403)
        if self.method not in permissions.SAFE_METHODS:
            codes.add(403)  # a role refusal, or a session request without CSRF
        if "{" in self.path:
            codes.add(404)
        if not any(r.media_type == "*/*" for r in view.renderer_classes):
            codes.add(406)
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer():
            codes |= {400, 413, 415}
        if view.throttle_classes:
            codes.add(429)
        return codes

    def _error_content(self, code: int) -> dict:
        if code == 400:
            schema = _error_schema_400()
        else:
            schema = self.resolve_serializer(ErrorSerializer, "response").ref
        return {"application/json": {"schema": schema}}

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._generic_error_codes():
            responses.setdefault(str(code), {"description": ERROR_DESCRIPTIONS[code]})
        for code, response in responses.items():
            if int(code) >= 400 and not response.get("content"):
                response["content"] = self._error_content(int(code))
        return dict(sorted(responses.items()))
