"""Structured logs: one JSON line per request for the log shipper."""

import json
import logging

import pytest
from django.utils.module_loading import import_string

from accounts.tests.factories import UserFactory
from kreo.settings.base import logging_config

pytestmark = pytest.mark.django_db


def _json_formatter() -> logging.Formatter:
    """The formatter production's LOGGING gives the console handler."""
    config = logging_config(True)
    console = config["handlers"]["console"]
    spec = dict(config["formatters"][console["formatter"]])
    return import_string(spec.pop("()"))(**spec)


def test_production_logs_json_lines_on_stdout():
    config = logging_config(True)
    assert config["handlers"]["console"]["stream"] == "ext://sys.stdout"
    assert config["loggers"]["kreo.request"]["level"] == "INFO"
    assert logging_config(False)["loggers"]["kreo.request"]["level"] == "WARNING"


def test_a_request_is_one_json_line_with_its_correlation_id(client, caplog):
    """The line names the request's correlation id (as sent to the client),
    the signed-in user, the view, the status and the duration."""
    user = UserFactory()
    client.force_login(user)
    with caplog.at_level(logging.INFO, logger="kreo.request"):
        response = client.get("/projects/")
    records = [r for r in caplog.records if r.name == "kreo.request"]
    assert len(records) == 1
    line = _json_formatter().format(records[0])
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["correlation_id"] == response["X-Correlation-ID"]
    assert entry["user_id"] == user.pk
    assert entry["view"] == "projects:list"
    assert entry["status"] == response.status_code == 200
    assert entry["method"] == "GET"
    assert entry["path"] == "/projects/"
    assert 0 < entry["duration_ms"] < 60_000
    assert entry["level"] == "INFO"
    assert "time" in entry


def test_anonymous_request_logs_no_user_and_no_query_string(client, caplog):
    with caplog.at_level(logging.INFO, logger="kreo.request"):
        client.get("/accounts/login/?token=secret-in-query")
    entry = json.loads(
        _json_formatter().format(
            next(r for r in caplog.records if r.name == "kreo.request")
        )
    )
    assert entry["user_id"] is None
    assert entry["view"] == "accounts:login"
    assert "secret-in-query" not in json.dumps(entry)
