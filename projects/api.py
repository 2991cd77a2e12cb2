"""The REST API over the same services and selectors the pages use."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import limits
from kreo.api import AnyMediaRenderer
from projects import invitations, selectors, services
from projects.downloads import file_response
from projects.ledger import LedgerError
from projects.permissions import Action
from projects.serializers import (
    FileRenameSerializer,
    FileUploadSerializer,
    InvitationSerializer,
    InvitedSerializer,
    MemberAddSerializer,
    MemberRoleSerializer,
    MembershipSerializer,
    ProjectFileSerializer,
    ProjectSerializer,
    ProjectWriteSerializer,
)
from projects.storage import RETRY_AFTER, StorageUnavailable
from projects.uploads import KINDS

LEDGER_DOWN = OpenApiResponse(
    description="The erasure ledger cannot be written: nothing was erased."
)
LAST_OWNER = OpenApiResponse(
    description="The last owner cannot be removed: add another owner first."
)
FILE_ALTERED_DOC = OpenApiResponse(
    description="The stored file failed its integrity check: nothing was sent."
)
FILE_KEY_GONE_DOC = OpenApiResponse(
    description="The file's key was destroyed (erased): it cannot be decrypted."
)


class LedgerUnavailable(exceptions.APIException):
    """503 with the ledger's message: nothing was erased, a retry may work."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "erasure_ledger"


class StorageDown(exceptions.APIException):
    """503 with Retry-After (DRF sends ``wait``): S3 is not answering."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "storage_unavailable"
    wait = RETRY_AFTER


def _erasing(erase, **kwargs):
    """Run an erasure service; a ledger refusal answers 503 with its message."""
    try:
        return erase(**kwargs)
    except LedgerError as exc:
        raise LedgerUnavailable(detail=str(exc)) from exc


def _valid(serializer_class, request, **kwargs):
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class ProjectListView(APIView):
    @extend_schema(responses=ProjectSerializer(many=True))
    def get(self, request):
        projects = selectors.project_list(user=request.user)
        return Response(
            ProjectSerializer(projects, many=True, context={"request": request}).data
        )

    @extend_schema(request=ProjectWriteSerializer, responses={201: ProjectSerializer})
    def post(self, request):
        data = _valid(ProjectWriteSerializer, request)
        project = services.project_create(actor=request.user, request=request, **data)
        return Response(
            ProjectSerializer(project, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


class ProjectDetailView(APIView):
    def _get(self, request, project_id, action):
        return selectors.project_get(
            user=request.user, project_id=project_id, action=action
        )

    @extend_schema(responses=ProjectSerializer)
    def get(self, request, project_id):
        project = self._get(request, project_id, Action.VIEW)
        return Response(ProjectSerializer(project, context={"request": request}).data)

    @extend_schema(request=ProjectWriteSerializer, responses=ProjectSerializer)
    def patch(self, request, project_id):
        project = self._get(request, project_id, Action.EDIT)
        data = _valid(ProjectWriteSerializer, request, partial=True)
        services.project_update(
            actor=request.user, project=project, request=request, **data
        )
        return Response(ProjectSerializer(project, context={"request": request}).data)

    @extend_schema(responses={204: None, 503: LEDGER_DOWN})
    def delete(self, request, project_id):
        project = self._get(request, project_id, Action.DELETE)
        _erasing(
            services.project_delete,
            actor=request.user,
            project=project,
            request=request,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class FileListView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(responses=ProjectFileSerializer(many=True))
    def get(self, request, project_id):
        project = selectors.project_get(
            user=request.user, project_id=project_id, action=Action.VIEW
        )
        files = selectors.project_file_list(project=project)
        return Response(ProjectFileSerializer(files, many=True).data)

    @extend_schema(request=FileUploadSerializer, responses={201: ProjectFileSerializer})
    def post(self, request, project_id):
        project = selectors.project_get(
            user=request.user, project_id=project_id, action=Action.UPLOAD
        )
        data = _valid(FileUploadSerializer, request)
        try:
            item = services.project_file_upload(
                actor=request.user,
                project=project,
                request=request,
                upload=data["file"],
                name=data.get("name"),
            )
        except StorageUnavailable as exc:
            raise StorageDown(detail=str(exc)) from exc
        return Response(
            ProjectFileSerializer(item).data, status=status.HTTP_201_CREATED
        )


class FileDetailView(APIView):
    def _get(self, request, project_id, file_id, action):
        return selectors.project_file_get(
            user=request.user, project_id=project_id, file_id=file_id, action=action
        )

    @extend_schema(responses=ProjectFileSerializer)
    def get(self, request, project_id, file_id):
        item = self._get(request, project_id, file_id, Action.VIEW)
        return Response(ProjectFileSerializer(item).data)

    @extend_schema(request=FileRenameSerializer, responses=ProjectFileSerializer)
    def patch(self, request, project_id, file_id):
        item = self._get(request, project_id, file_id, Action.RENAME_FILE)
        data = _valid(FileRenameSerializer, request)
        if "name" in data:
            services.project_file_rename(
                actor=request.user, item=item, name=data["name"], request=request
            )
        return Response(ProjectFileSerializer(item).data)

    @extend_schema(responses={204: None, 503: LEDGER_DOWN})
    def delete(self, request, project_id, file_id):
        item = self._get(request, project_id, file_id, Action.DELETE_FILE)
        _erasing(
            services.project_file_delete, actor=request.user, item=item, request=request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class FileDownloadView(APIView):
    # Any Accept header: the answer is the file's own type (errors stay JSON).
    renderer_classes = [JSONRenderer, AnyMediaRenderer]

    @extend_schema(
        responses={
            **{
                (200, content_type): OpenApiResponse(
                    OpenApiTypes.BINARY,
                    description="The file's bytes, with the type it was stored as.",
                )
                for content_type in sorted({kind.content_type for kind in KINDS})
            },
            409: FILE_ALTERED_DOC,
            410: FILE_KEY_GONE_DOC,
        }
    )
    def get(self, request, project_id, file_id):
        item = selectors.project_file_get(
            user=request.user,
            project_id=project_id,
            file_id=file_id,
            action=Action.VIEW,
        )
        return file_response(request, item)


class MemberListView(APIView):
    @extend_schema(responses=MembershipSerializer(many=True))
    def get(self, request, project_id):
        project = selectors.project_get(
            user=request.user, project_id=project_id, action=Action.VIEW
        )
        members = selectors.membership_list(project=project)
        return Response(MembershipSerializer(members, many=True).data)

    @extend_schema(
        request=MemberAddSerializer,
        responses={
            202: InvitedSerializer,
            429: OpenApiResponse(description="Too many invitations: wait."),
        },
        description=(
            "Invite an address with a role. The answer is the same whether or "
            "not the address has an account; the person joins only after "
            "accepting the link mailed to that address."
        ),
    )
    def post(self, request, project_id):
        project = selectors.project_get(
            user=request.user, project_id=project_id, action=Action.MANAGE_MEMBERS
        )
        wait = limits.limit_wait(
            request._request, scope="invite", email=request.user.email
        )
        if wait:
            return limits.limited_response(
                request._request, scope="invite", wait=wait, json=True
            )
        data = _valid(MemberAddSerializer, request)
        invitations.invitation_create(
            actor=request.user, project=project, request=request._request, **data
        )
        detail = invitations.INVITED.format(days=settings.KREO_INVITATION_DAYS)
        return Response({"detail": detail}, status=status.HTTP_202_ACCEPTED)


class MemberDetailView(APIView):
    def _get(self, request, project_id, membership_id, action):
        project = selectors.project_get(
            user=request.user, project_id=project_id, action=action
        )
        return selectors.membership_get(project=project, membership_id=membership_id)

    @extend_schema(responses=MembershipSerializer)
    def get(self, request, project_id, membership_id):
        membership = self._get(request, project_id, membership_id, Action.VIEW)
        return Response(MembershipSerializer(membership).data)

    @extend_schema(request=MemberRoleSerializer, responses=MembershipSerializer)
    def patch(self, request, project_id, membership_id):
        membership = self._get(
            request, project_id, membership_id, Action.MANAGE_MEMBERS
        )
        data = _valid(MemberRoleSerializer, request)
        if "role" in data:
            membership = services.membership_change_role(
                actor=request.user,
                membership=membership,
                role=data["role"],
                request=request,
            )
        return Response(MembershipSerializer(membership).data)

    @extend_schema(responses={204: None, 400: LAST_OWNER})
    def delete(self, request, project_id, membership_id):
        membership = self._get(
            request, project_id, membership_id, Action.MANAGE_MEMBERS
        )
        services.membership_remove(
            actor=request.user, membership=membership, request=request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(APIView):
    @extend_schema(responses=InvitationSerializer(many=True))
    def get(self, request, project_id):
        """Pending invitations (owners only)."""
        project = selectors.project_get(
            user=request.user, project_id=project_id, action=Action.MANAGE_MEMBERS
        )
        pending = selectors.invitation_list(project=project).select_related(
            "invited_by"
        )
        return Response(InvitationSerializer(pending, many=True).data)


class InvitationDetailView(APIView):
    @extend_schema(
        responses={
            204: None,
            400: OpenApiResponse(description="Already accepted or revoked."),
        }
    )
    def delete(self, request, project_id, invitation_id):
        """Revoke a pending invitation: its link stops working."""
        project = selectors.project_get(
            user=request.user, project_id=project_id, action=Action.MANAGE_MEMBERS
        )
        invitation = selectors.invitation_get(
            project=project, invitation_id=invitation_id
        )
        invitations.invitation_revoke(
            actor=request.user, invitation=invitation, request=request._request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
