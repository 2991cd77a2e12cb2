from django import forms

from projects.models import Role
from projects.uploads import ACCEPTED


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


class RenameForm(forms.Form):
    name = forms.CharField(max_length=255)


class MemberAddForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
