from django import template
from django.conf import settings

from accounts.oidc.models import Identity

register = template.Library()

BUTTONS = [
    ("google", "Continue with Google"),
    ("linkedin", "Continue with LinkedIn"),
    ("microsoft", "Continue with Microsoft"),
    ("company", "Company single sign-on"),
]


@register.inclusion_tag("accounts/oidc/_button_list.html")
def sso_buttons(next_url=""):
    hints = settings.KREO_OIDC_IDP_HINTS
    return {
        "enabled": settings.KREO_OIDC_ENABLED,
        "buttons": [(key, label) for key, label in BUTTONS if key in hints],
        "next": next_url,
    }


@register.inclusion_tag("accounts/oidc/_identity_list.html", takes_context=True)
def sso_identities(context):
    user = context["request"].user
    return {
        "enabled": settings.KREO_OIDC_ENABLED,
        "identities": list(Identity.objects.filter(user=user)),
        "csrf_token": context.get("csrf_token"),
    }
