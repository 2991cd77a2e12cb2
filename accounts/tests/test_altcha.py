"""ALTCHA, the default CAPTCHA, attacked through the sign-up page.

Challenges come from the real endpoint and are solved with the ``altcha``
package's own solver (the same protocol the vendored widget speaks); the
browser side is in ``test_offline_signup.py``.
"""

import base64
import json
import threading
import time

import altcha
import pytest
from django.urls import reverse

from accounts.captcha.altcha import Refused, payload_redeem
from accounts.captcha.messages import (
    ALTCHA_EXPIRED,
    ALTCHA_FORGED,
    ALTCHA_MALFORMED,
    ALTCHA_REPLAYED,
    ALTCHA_WRONG,
    CAPTCHA_REJECTED,
)
from accounts.models import User
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

SIGNUP = "accounts:signup"
NEW_PASSWORD = "correct horse battery staple 42"


def challenge(client) -> dict:
    response = client.get(reverse("accounts:captcha-challenge"))
    assert response.status_code == 200
    return response.json()


def solve(data: dict) -> altcha.Solution:
    solution = altcha.solve_challenge(altcha.Challenge.from_dict(data), timeout=10)
    assert solution is not None
    return solution


def payload(data: dict, solution: altcha.Solution | None = None) -> str:
    solution = solution or solve(data)
    return base64.b64encode(
        json.dumps({"challenge": data, "solution": solution.to_dict()}).encode()
    ).decode()


def b64(value) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def signup(client, email, captcha):
    data = {"email": email, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    if captcha is not None:
        data["captcha"] = captcha
    return client.post(reverse(SIGNUP), data)


def failures():
    return list(
        AuditEvent.objects.filter(event_type="auth.captcha.failed").values_list(
            "error_code", "details__scope"
        )
    )


def assert_refused(response, message, email):
    assert response.status_code == 400
    assert message in response.content.decode()
    # The form comes back with a fresh widget to solve again.
    assert "<altcha-widget" in response.content.decode()
    assert not User.objects.filter(email=email).exists()


def test_the_signup_page_shows_the_self_hosted_widget_under_the_strict_csp(client):
    """The page loads ALTCHA from our static files; the CSP names no other origin."""
    response = client.get(reverse(SIGNUP))
    page = response.content.decode()
    assert "<altcha-widget" in page and 'name="captcha"' in page
    assert "/static/js/altcha-setup.js" in page
    assert "google" not in page and "gstatic" not in page
    csp = response["Content-Security-Policy"]
    assert "https:" not in csp and "blob:" not in csp and "unsafe" not in csp


def test_the_challenge_is_signed_expires_and_sets_no_cookie(client, settings):
    """A challenge carries a signature and an expiry; fetching it stores nothing."""
    response = client.get(reverse("accounts:captcha-challenge"))
    data = response.json()
    assert len(data["signature"]) == 64
    expires_in = data["parameters"]["expiresAt"] - time.time()
    assert settings.KREO_ALTCHA_EXPIRES_SECONDS - 5 < expires_in
    assert expires_in <= settings.KREO_ALTCHA_EXPIRES_SECONDS
    assert "no-store" in response["Cache-Control"]
    assert not response.cookies
    assert client.head(reverse("accounts:captcha-challenge")).status_code == 200
    assert client.post(reverse("accounts:captcha-challenge")).status_code == 405
    settings.KREO_CAPTCHA = "recaptcha"
    assert client.get(reverse("accounts:captcha-challenge")).status_code == 404


def test_a_solved_challenge_signs_up_once_and_a_replay_is_refused(client):
    """The first use of a solution signs up; the same solution again gets 400."""
    solved = payload(challenge(client))
    first = signup(client, "first@example.test", solved)
    assert first.status_code == 302
    assert User.objects.filter(email="first@example.test").exists()

    again = signup(client, "second@example.test", solved)
    assert_refused(again, ALTCHA_REPLAYED, "second@example.test")
    assert failures() == [("altcha_replayed", "signup")]


def test_a_challenge_signed_with_another_key_is_refused(client):
    """A challenge the attacker made (and solved) with their own key gets 400."""
    own = altcha.create_challenge(
        "PBKDF2/SHA-256",
        1,
        counter=3,
        expires_at=int(time.time()) + 600,
        hmac_secret="the attacker's key",
    ).to_dict()
    response = signup(client, "bot@example.test", payload(own))
    assert_refused(response, ALTCHA_FORGED, "bot@example.test")
    assert failures() == [("altcha_forged", "signup")]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: p.update(expiresAt=p["expiresAt"] + 86400), id="expiry"),
        pytest.param(lambda p: p.update(keyPrefix=p["keyPrefix"][:2]), id="easier"),
        pytest.param(lambda p: p.pop("expiresAt"), id="no-expiry"),
    ],
)
def test_a_tampered_challenge_is_refused(client, tamper):
    """Moving the expiry, making the work easier or dropping the expiry: 400."""
    data = challenge(client)
    tamper(data["parameters"])
    response = signup(client, "bot@example.test", payload(data))
    assert_refused(response, ALTCHA_FORGED, "bot@example.test")
    assert failures() == [("altcha_forged", "signup")]


def test_an_unsigned_challenge_is_refused(client):
    """A payload whose challenge has no signature at all gets 400."""
    data = challenge(client)
    del data["signature"]
    response = signup(client, "bot@example.test", payload(data))
    assert response.status_code == 400
    assert_refused(response, ALTCHA_FORGED, "bot@example.test")


def test_an_expired_challenge_is_refused(client, settings):
    """A solution sent after the challenge expired gets 400, even if correct."""
    settings.KREO_ALTCHA_EXPIRES_SECONDS = 1
    data = challenge(client)
    solved = payload(data)
    while time.time() <= data["parameters"]["expiresAt"]:
        time.sleep(0.1)
    response = signup(client, "late@example.test", solved)
    assert_refused(response, ALTCHA_EXPIRED, "late@example.test")
    assert failures() == [("altcha_expired", "signup")]


def test_a_wrong_answer_is_refused(client):
    """A counter or derived key that does not solve the challenge gets 400."""
    data = challenge(client)
    right = solve(data)
    wrong_counter = altcha.Solution(right.counter + 1, right.derived_key)
    wrong_key = altcha.Solution(right.counter, "00" * 32)
    for n, solution in enumerate((wrong_counter, wrong_key)):
        response = signup(client, f"guess{n}@example.test", payload(data, solution))
        assert_refused(response, ALTCHA_WRONG, f"guess{n}@example.test")
    assert failures() == [("altcha_wrong", "signup")] * 2
    # A wrong guess does not spend the challenge: the right answer still works.
    assert signup(client, "right@example.test", payload(data, right)).status_code == 302


@pytest.mark.parametrize(
    "captcha",
    [
        pytest.param("%%% not base64 %%%", id="not-base64"),
        pytest.param(base64.b64encode(b"\xff\xfe not utf-8").decode(), id="not-utf8"),
        pytest.param(base64.b64encode(b"{not json").decode(), id="not-json"),
        pytest.param(b64([1, 2, 3]), id="a-list"),
        pytest.param(b64({"challenge": {}, "solution": {}}), id="empty"),
        pytest.param(
            b64({"challenge": None, "solution": None, "test": True}), id="test-mode"
        ),
        pytest.param(
            b64({"challenge": {"parameters": "x", "signature": 1}, "solution": 2}),
            id="wrong-types",
        ),
        pytest.param(
            base64.b64encode(b"[" * 5000 + b"]" * 5000).decode(), id="deep-json"
        ),
        pytest.param("A" * 100_000, id="huge"),
    ],
)
def test_a_malformed_payload_is_refused(client, captcha):
    """Garbage in the CAPTCHA field gets 400 with a message, never a 500."""
    response = signup(client, "bot@example.test", captcha)
    assert_refused(response, ALTCHA_MALFORMED, "bot@example.test")
    assert failures() == [("altcha_malformed", "signup")]


def test_wrong_field_types_inside_a_signed_challenge_are_malformed(client):
    """A solution whose counter is not a number is refused, not crashed on."""
    data = challenge(client)
    encoded = b64({"challenge": data, "solution": {"counter": "7", "derivedKey": []}})
    response = signup(client, "bot@example.test", encoded)
    assert response.status_code == 400
    assert not User.objects.filter(email="bot@example.test").exists()


def test_an_unsolved_captcha_is_a_form_error(client):
    """No payload at all: the form says the CAPTCHA was not solved (200)."""
    response = signup(client, "slow@example.test", None)
    assert response.status_code == 200
    assert CAPTCHA_REJECTED in response.content.decode()
    assert not User.objects.filter(email="slow@example.test").exists()
    assert failures() == [("rejected", "signup")]


def test_only_one_of_many_concurrent_redemptions_wins(client):
    """Eight requests racing with one solution: exactly one is accepted."""
    solved = payload(challenge(client))
    outcomes, start = [], threading.Barrier(8)

    def redeem():
        start.wait()
        try:
            payload_redeem(solved)
            outcomes.append("accepted")
        except Refused as refused:
            outcomes.append(refused.code)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted"] + ["altcha_replayed"] * 7


def test_login_asks_for_altcha_after_failures_and_checks_it_first(client):
    """After 3 failures the login form needs a solved ALTCHA before the password."""
    user = UserFactory()
    login = reverse("accounts:login")
    for n in range(3):
        response = client.post(login, {"username": user.email, "password": f"no {n}"})
    assert "<altcha-widget" in response.content.decode()
    assert "google" not in response["Content-Security-Policy"]

    unsolved = client.post(login, {"username": user.email, "password": PASSWORD})
    assert CAPTCHA_REJECTED in unsolved.content.decode()
    forged = dict(challenge(client), signature="0" * 64)
    refused = client.post(
        login,
        {"username": user.email, "password": PASSWORD, "captcha": payload(forged)},
    )
    assert refused.status_code == 400
    assert ALTCHA_FORGED in refused.content.decode()

    solved = payload(challenge(client))
    good = {"username": user.email, "password": PASSWORD, "captcha": solved}
    assert client.post(login, good).status_code == 302
    assert failures() == [("rejected", "login"), ("altcha_forged", "login")]


def test_password_reset_takes_a_solved_altcha_once(client):
    """The reset form accepts a solved ALTCHA and refuses its replay."""
    user = UserFactory()
    url = reverse("accounts:password-reset")
    solved = payload(challenge(client))
    assert client.post(url, {"email": user.email, "captcha": solved}).status_code == 302
    replay = client.post(url, {"email": user.email, "captcha": solved})
    assert replay.status_code == 400
    assert ALTCHA_REPLAYED in replay.content.decode()
    assert failures() == [("altcha_replayed", "reset")]


@pytest.mark.parametrize(
    "change, refusal",
    [
        pytest.param(
            {"KREO_ALTCHA_HMAC_KEY": None}, "set KREO_ALTCHA_HMAC_KEY", id="no-key"
        ),
        pytest.param(
            {"KREO_ALTCHA_HMAC_KEY": "short-key"},
            "KREO_ALTCHA_HMAC_KEY must be at least 32 characters",
            id="short-key",
        ),
        pytest.param(
            {"KREO_CAPTCHA": "recaptcha", "KREO_ALTCHA_HMAC_KEY": None},
            "set RECAPTCHA_PUBLIC_KEY, RECAPTCHA_PRIVATE_KEY",
            id="recaptcha-without-keys",
        ),
        pytest.param(
            {"KREO_CAPTCHA": "hcaptcha"},
            "KREO_CAPTCHA must be altcha or recaptcha, not 'hcaptcha'",
            id="unknown",
        ),
    ],
)
def test_production_refuses_a_captcha_it_cannot_run(change, refusal):
    """Production names what is missing for the chosen CAPTCHA, exit 1."""
    from kreo.tests.test_settings import PRODUCTION_ENV, manage

    env = {**PRODUCTION_ENV, **change}
    done = manage("check", env={k: v for k, v in env.items() if v is not None})
    assert done.returncode == 1
    assert refusal in done.stderr
    assert "Traceback" not in done.stderr


def test_production_runs_recaptcha_with_its_keys_and_no_altcha_key():
    """Choosing reCAPTCHA needs its keys, not the ALTCHA key."""
    from kreo.tests.test_settings import PRODUCTION_ENV, manage

    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "KREO_ALTCHA_HMAC_KEY"}
    env.update(
        KREO_CAPTCHA="recaptcha",
        RECAPTCHA_PUBLIC_KEY="ci-site-key",
        RECAPTCHA_PRIVATE_KEY="ci-secret-key",
    )
    done = manage("check", env=env)
    assert done.returncode == 0, done.stderr
