import secrets

from django.db import transaction

from accounts.models import User


@transaction.atomic
def demo_user_ensure(*, email: str) -> tuple[User, str]:
    """Create the demo user, or give it a fresh random password; return both."""
    password = "demo-" + secrets.token_urlsafe(12)
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=password)
    else:
        user.set_password(password)
        user.is_active = True
        user.save(update_fields=["password", "is_active"])
    return user, password
