from django import forms


class AccountDeleteForm(forms.Form):
    """The password field only where the password is the way to confirm: an
    account confirmed at its sign-in provider types DELETE alone."""

    # Not required here: an empty password is refused (and audited) by the
    # service like a wrong one.
    password = forms.CharField(
        label="Your current password",
        widget=forms.PasswordInput,
        strip=False,
        required=False,
    )
    confirm = forms.CharField(label="Type DELETE to confirm", max_length=10)

    def __init__(self, *args, with_password: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not with_password:
            del self.fields["password"]
