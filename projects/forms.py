from django import forms
from django.conf import settings

from projects.models import Role
from projects.uploads import ACCEPTED, size_limit_text


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )


class UploadForm(forms.Form):
    file = forms.FileField(
        allow_empty_file=True,  # refused by projects.uploads with its own message
        help_text=f"Accepted: {ACCEPTED}.",
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPTED.replace(" ", "")}),
    )
    name = forms.CharField(
        max_length=255, required=False, help_text="Leave blank to keep the file's name."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The limit on the form, and for the browser's own check before sending
        # (static/js/upload.js); the server's check stays the one that counts.
        field = self.fields["file"]
        field.help_text = f"Accepted: {ACCEPTED}. Up to {size_limit_text()}."
        field.widget.attrs["data-max-bytes"] = str(settings.KREO_MAX_UPLOAD_BYTES)
        field.widget.attrs["data-limit-text"] = size_limit_text()


class RenameForm(forms.Form):
    name = forms.CharField(max_length=255)


class MemberAddForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
