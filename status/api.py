"""The Statuspage v2 API shapes (field names and values as Atlassian's).

Widgets and monitors written for ``/api/v2/summary.json`` read ours as is.
"""

import hashlib
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from status import selectors
from status.models import Component, Incident, Maintenance

PAGE_NAME = "Kreo"
INCIDENTS_LIMIT = 50


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def page() -> dict:
    url = settings.STATUS_PUBLIC_URL
    return {
        "id": hashlib.sha256(url.encode()).hexdigest()[:12],
        "name": PAGE_NAME,
        "url": url,
        "time_zone": "Etc/UTC",
        "updated_at": _time(selectors.page_updated_at()),
    }


def component(c: Component, page_id: str) -> dict:
    return {
        "id": c.public_id,
        "name": c.name,
        "status": c.state,
        "created_at": _time(c.created_at),
        "updated_at": _time(c.updated_at),
        "position": c.position,
        "description": c.description or None,
        "showcase": True,
        "start_date": c.created_at.date().isoformat(),
        "group_id": None,
        "page_id": page_id,
        "group": False,
        "only_show_if_degraded": False,
    }


def _update(u, incident_id: str, components: list[dict]) -> dict:
    return {
        "id": u.public_id,
        "status": u.status,
        "body": u.body,
        "incident_id": incident_id,
        "created_at": _time(u.created_at),
        "updated_at": _time(u.created_at),
        "display_at": _time(u.created_at),
        "affected_components": [
            {
                "code": c["id"],
                "name": c["name"],
                "old_status": c["status"],
                "new_status": c["status"],
            }
            for c in components
        ],
        "deliver_notifications": True,
        "custom_tweet": None,
        "tweet_id": None,
    }


def incident(i: Incident, page_id: str) -> dict:
    components = [component(c, page_id) for c in i.components.all()]
    updates = sorted(i.updates.all(), key=lambda u: u.created_at, reverse=True)
    monitoring = [u.created_at for u in updates if u.status == "monitoring"]
    return {
        "id": i.public_id,
        "name": i.title,
        "status": i.status,
        "created_at": _time(i.created_at),
        "updated_at": _time(i.updated_at),
        "monitoring_at": _time(monitoring[0]) if monitoring else None,
        "resolved_at": _time(i.resolved_at),
        "impact": i.impact,
        "shortlink": public_link(i.get_absolute_url()),
        "started_at": _time(i.created_at),
        "page_id": page_id,
        "incident_updates": [_update(u, i.public_id, components) for u in updates],
        "components": components,
    }


def maintenance(m: Maintenance, page_id: str, now: datetime) -> dict:
    components = [component(c, page_id) for c in m.components.all()]
    status = m.status_at(now)
    body = m.body or m.title
    return {
        "id": m.public_id,
        "name": m.title,
        "status": status,
        "created_at": _time(m.created_at),
        "updated_at": _time(m.created_at),
        "monitoring_at": None,
        "resolved_at": _time(m.ends_at) if status == "completed" else None,
        "impact": "maintenance",
        "shortlink": public_link("/status/"),
        "started_at": _time(m.starts_at),
        "page_id": page_id,
        "incident_updates": [
            {
                "id": f"{m.public_id}-0",
                "status": "scheduled",
                "body": body,
                "incident_id": m.public_id,
                "created_at": _time(m.created_at),
                "updated_at": _time(m.created_at),
                "display_at": _time(m.created_at),
                "affected_components": [],
                "deliver_notifications": True,
                "custom_tweet": None,
                "tweet_id": None,
            }
        ],
        "components": components,
        "scheduled_for": _time(m.starts_at),
        "scheduled_until": _time(m.ends_at),
    }


def public_link(path: str) -> str:
    """``path`` (an app path under /status/) at the page's public address."""
    relative = path.removeprefix("/status/")
    return settings.STATUS_PUBLIC_URL.rstrip("/") + "/" + relative


def documents(now: datetime | None = None) -> dict[str, dict]:
    """Every JSON document of the API, by its path under ``api/v2/``."""
    now = now or timezone.now()
    p = page()
    pid = p["id"]
    components = [component(c, pid) for c in selectors.component_list()]
    unresolved = [incident(i, pid) for i in selectors.incidents_unresolved()]
    recent = [incident(i, pid) for i in selectors.incidents_all()[:INCIDENTS_LIMIT]]
    windows = [maintenance(m, pid, now) for m in selectors.maintenance_list(now=now)]
    status = selectors.overall(now=now)
    return {
        "summary.json": {
            "page": p,
            "components": components,
            "incidents": unresolved,
            "scheduled_maintenances": windows,
            "status": status,
        },
        "status.json": {"page": p, "status": status},
        "components.json": {"page": p, "components": components},
        "incidents.json": {"page": p, "incidents": recent},
        "incidents/unresolved.json": {"page": p, "incidents": unresolved},
        "scheduled-maintenances.json": {
            "page": p,
            "scheduled_maintenances": windows,
        },
    }
