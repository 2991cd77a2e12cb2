"""The Statuspage v2 API (field names and values as Atlassian's) and feeds."""

import feedparser
import pytest
from django.urls import reverse

from status import probes, services
from status.models import IncidentStatus, ProbeResult
from status.tests import factories

pytestmark = pytest.mark.django_db

# Atlassian Statuspage v2 (https://metastatuspage.com/api/v2/), field by field.
PAGE = {"id", "name", "url", "time_zone", "updated_at"}
COMPONENT = {
    "id",
    "name",
    "status",
    "created_at",
    "updated_at",
    "position",
    "description",
    "showcase",
    "start_date",
    "group_id",
    "page_id",
    "group",
    "only_show_if_degraded",
}
INCIDENT = {
    "id",
    "name",
    "status",
    "created_at",
    "updated_at",
    "monitoring_at",
    "resolved_at",
    "impact",
    "shortlink",
    "started_at",
    "page_id",
    "incident_updates",
    "components",
}
UPDATE = {
    "id",
    "status",
    "body",
    "incident_id",
    "created_at",
    "updated_at",
    "display_at",
    "affected_components",
    "deliver_notifications",
    "custom_tweet",
    "tweet_id",
}
MAINTENANCE = INCIDENT | {"scheduled_for", "scheduled_until"}
COMPONENT_STATES = {
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
}
INDICATORS = {"none", "minor", "major", "critical"}
INCIDENT_STATES = {
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "postmortem",
}
IMPACTS = {"none", "minor", "major", "critical"}


def _get(client, name):
    response = client.get(reverse(f"status:{name}"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


def test_summary_matches_statuspage_field_by_field(client, components):
    """summary.json: page, components, incidents, scheduled_maintenances,
    status; every object with Statuspage's fields and values."""
    for _ in range(3):
        services.sample_record(
            component=components["email"],
            outcome=probes.Outcome(ProbeResult.FAIL, 5, "mail relay: down"),
        )
    factories.incident(components=[components["email"]])
    factories.maintenance(components=[components["backups"]])
    body = _get(client, "api-summary")
    assert set(body) == {
        "page",
        "components",
        "incidents",
        "scheduled_maintenances",
        "status",
    }
    assert set(body["page"]) == PAGE
    assert body["page"]["time_zone"] == "Etc/UTC"
    assert len(body["components"]) == 6
    for component in body["components"]:
        assert set(component) == COMPONENT
        assert component["status"] in COMPONENT_STATES
    states = {c["name"]: c["status"] for c in body["components"]}
    assert states["Email"] == "partial_outage"
    assert states["Web app"] == "operational"
    [incident] = body["incidents"]
    assert set(incident) == INCIDENT
    assert incident["status"] in INCIDENT_STATES and incident["impact"] in IMPACTS
    assert incident["shortlink"].endswith(f"/incidents/{incident['id']}/")
    assert set(incident["incident_updates"][0]) == UPDATE
    [window] = body["scheduled_maintenances"]
    assert set(window) == MAINTENANCE
    assert window["status"] == "in_progress" and window["impact"] == "maintenance"
    assert body["status"] == {
        "indicator": "major",
        "description": "Partial System Outage",
    }
    assert body["status"]["indicator"] in INDICATORS
    assert incident["created_at"].endswith("+00:00")


def test_the_other_documents(client, components):
    """status, components, incidents, unresolved, scheduled-maintenances."""
    factories.incident(title="Old", updates=[(IncidentStatus.RESOLVED, "Done.")])
    factories.incident(title="Open")
    assert set(_get(client, "api-status")) == {"page", "status"}
    assert _get(client, "api-status")["status"]["indicator"] == "major"
    assert len(_get(client, "api-components")["components"]) == 6
    assert [i["name"] for i in _get(client, "api-incidents")["incidents"]] == [
        "Open",
        "Old",
    ]
    unresolved = _get(client, "api-incidents-unresolved")["incidents"]
    assert [i["name"] for i in unresolved] == ["Open"]
    resolved = _get(client, "api-incidents")["incidents"][1]
    assert resolved["status"] == "resolved" and resolved["resolved_at"]
    maint = _get(client, "api-scheduled-maintenances")
    assert set(maint) == {"page", "scheduled_maintenances"}


def test_feeds_are_valid_atom_and_rss(client, components):
    """feedparser reads both feeds without complaint; HTML typed in an update
    arrives as text, not markup."""
    factories.incident(
        title="Sign-in slow",
        updates=[(IncidentStatus.IDENTIFIED, "Cause: <img src=x onerror=alert(1)>")],
    )
    for name, version in (("feed-atom", "atom10"), ("feed-rss", "rss20")):
        response = client.get(reverse(f"status:{name}"))
        assert response.status_code == 200
        parsed = feedparser.parse(response.content)
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert parsed.version == version
        [entry] = parsed.entries
        assert entry.title == "Sign-in slow (Identified)"
        assert entry.link.endswith(
            "/status/incidents/" + entry.link.split("/")[-2] + "/"
        )
        assert "<img" not in response.content.decode()
