"""The page in Chromium: desktop and 390 px, operational, degraded, incident.

Screenshots go to var/screenshots/status/ (not committed) for the closing
note; the assertions are what a reader would check: nothing wider than the
phone, no blocked script or style, local times added beside UTC.
"""

from pathlib import Path

import pytest

from accounts.tests.test_e2e import chromium
from status import probes, services
from status.models import IncidentStatus, ProbeResult
from status.tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "status"
WIDTHS = {"desktop": 1280, "mobile": 390}


def _fail(component, n):
    for _ in range(n):
        services.sample_record(
            component=component,
            outcome=probes.Outcome(ProbeResult.FAIL, 5, "down"),
        )


def _shoot(live_server, state: str) -> list[dict]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    seen = []
    with chromium() as browser:
        for label, width in WIDTHS.items():
            page = browser.new_page(viewport={"width": width, "height": 900})
            problems = []
            page.on(
                "console",
                lambda m, problems=problems: (
                    problems.append(m.text) if m.type == "error" else None
                ),
            )
            page.on(
                "response",
                lambda r, problems=problems: (
                    problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
                ),
            )
            page.goto(f"{live_server.url}/status/")
            page.wait_for_load_state("load")
            page.screenshot(path=str(SHOTS / f"{state}-{label}.png"), full_page=True)
            seen.append(
                {
                    "width": width,
                    "scroll": page.evaluate("document.documentElement.scrollWidth"),
                    "bars": page.locator("svg.st-bars").count(),
                    "svg_width": page.evaluate(
                        "Math.max(...[...document.querySelectorAll('svg.st-bars')]"
                        ".map(s => s.getBoundingClientRect().width))"
                    ),
                    "local": page.locator("text=your time").count(),
                    "banner": page.locator("h1").first.inner_text(),
                    "problems": problems,
                }
            )
            page.close()
    return seen


@pytest.mark.parametrize("state", ["operational", "degraded", "incident"])
def test_the_page_fits_desktop_and_a_phone(live_server, components, state):
    """At 1280 and 390 px: no horizontal scroll, the bars fit, no console
    error (CSP included), the reader's local time beside UTC."""
    for component in components.values():
        services.sample_record(
            component=component, outcome=probes.Outcome(ProbeResult.OK, 5, "")
        )
    banner = "All Systems Operational"
    if state == "degraded":
        _fail(components["email"], 2)
        banner = "Minor Service Outage"
    if state == "incident":
        _fail(components["storage"], 5)
        factories.incident(
            title="File uploads failing",
            components=[components["storage"]],
            updates=[
                (IncidentStatus.INVESTIGATING, "Uploads time out for some users."),
                (IncidentStatus.IDENTIFIED, "A storage node is down; failing over."),
            ],
        )
        banner = "Major Service Outage"
    for seen in _shoot(live_server, state):
        assert seen["scroll"] <= seen["width"], seen
        assert seen["bars"] == 6
        assert seen["svg_width"] <= seen["width"]
        assert seen["local"] >= 1
        assert seen["banner"] == banner
        assert seen["problems"] == []
    assert (SHOTS / f"{state}-mobile.png").stat().st_size > 10_000
