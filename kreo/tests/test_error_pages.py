"""Error pages a person meets read in the site's layout and say what to do."""

import pytest
from django.test import Client
from django.urls import reverse

from kreo.views import CSRF_FAILED

pytestmark = pytest.mark.django_db


def test_an_expired_form_says_so_in_the_site_layout():
    """A POST whose CSRF token is missing (an expired page, or a forged form
    from another site) gets a 403 page that explains and keeps the layout."""
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("accounts:login"), {"username": "a@example.test", "password": "x"}
    )
    assert response.status_code == 403
    text = response.content.decode()
    assert CSRF_FAILED in text
    assert 'class="topbar"' in text and "Skip to content" in text
    assert "CSRF verification failed" not in text  # Django's bare page


def test_a_missing_page_is_a_page_with_a_way_back():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    text = response.content.decode()
    assert "There is nothing here" in text and 'href="/"' in text
