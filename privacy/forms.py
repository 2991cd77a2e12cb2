from django import forms


class AccountDeleteForm(forms.Form):
    password = forms.CharField(
        label="Your current password", widget=forms.PasswordInput, strip=False
    )
    confirm = forms.CharField(label="Type DELETE to confirm", max_length=10)
