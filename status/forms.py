from django import forms

from status.models import Component

BAD_EMAIL = "Enter a valid e-mail address, such as name@example.com."
BAD_URL = "Enter a valid web address, such as https://example.com/hook."
UNKNOWN_COMPONENT = "Choose components from the list; “%(value)s” is not one of them."


class SubscribeForm(forms.Form):
    email = forms.EmailField(
        max_length=254,
        error_messages={"invalid": BAD_EMAIL, "required": BAD_EMAIL},
        help_text="We send a link to confirm; nothing is sent before you do.",
    )
    webhook = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        label="Webhook address (optional)",
        help_text="Updates are POSTed as JSON, signed with HMAC-SHA256.",
        error_messages={"invalid": BAD_URL},
    )
    components = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": UNKNOWN_COMPONENT},
        help_text="None chosen: every component.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["components"].choices = [
            (c.slug, c.name) for c in Component.objects.all()
        ]

    def chosen_components(self) -> list[Component]:
        slugs = self.cleaned_data.get("components") or []
        return list(Component.objects.filter(slug__in=slugs))
