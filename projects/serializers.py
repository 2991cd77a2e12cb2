from rest_framework import serializers

from projects.models import Invitation, Membership, Project, ProjectFile, Role


class StrictCharField(serializers.CharField):
    """A string, and only a string: a JSON number is refused, not converted."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "description", "role", "created_at", "updated_at"]
        read_only_fields = fields

    def get_role(self, project) -> str | None:
        from projects.permissions import project_role

        return project_role(self.context["request"].user, project)


class ProjectWriteSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)


class ProjectFileSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.SlugRelatedField(slug_field="email", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ProjectFile
        fields = [
            "id",
            "name",
            "kind",
            "content_type",
            "size",
            "sha256",
            "uploaded_by",
            "uploaded_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, item) -> str:
        from django.urls import reverse

        return reverse("api:file-download", args=[item.project_id, item.pk])


class FileUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)
    name = StrictCharField(max_length=255, required=False, allow_blank=True)


class FileRenameSerializer(serializers.Serializer):
    """Without name, a PATCH changes nothing."""

    name = StrictCharField(max_length=255, required=False)


class MembershipSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "added_at"]
        read_only_fields = fields


class MemberAddSerializer(serializers.Serializer):
    email = StrictEmailField()
    role = StrictChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields


class InvitedSerializer(serializers.Serializer):
    """The answer to an invitation: the same words for every address."""

    detail = serializers.CharField()


class MemberRoleSerializer(serializers.Serializer):
    """Without role, a PATCH changes nothing."""

    role = StrictChoiceField(choices=Role.choices, required=False)
