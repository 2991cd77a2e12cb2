"""The cockpit in Chromium: an auditor signs in through the real password and
TOTP steps and reads 90 days of seeded activity; the charts render with
accessible names, and the page fits a phone.

Screenshots go to ``KREO_SCREENSHOT_DIR`` when set (else the test's tmp dir).
"""

import os
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.test_e2e import chromium
from audit.models import AuditEvent
from backups.models import BackupSet, SetState
from compliance.models import CheckRun, CheckStatus, ControlResult
from kreo.permissions import AUDITOR_GROUP
from monitoring.models import Alert, AlertState

pytestmark = pytest.mark.django_db(transaction=True)
OTHERS = ["access-review", "audit-chain", "retention", "tls-headers", "tokens"]


def seed(days: int = 90) -> None:
    """A quarter of made-up activity: daily runs, backups (with a three-day
    outage), failed sign-ins, 2FA adoption rising, alerts opened and closed."""
    today = timezone.localdate()
    events, results = [], []
    for n in range(days):
        day = today - timedelta(days=days - 1 - n)
        at = datetime.combine(day, time(4), tzinfo=UTC)
        outage = 40 <= n < 43
        if not outage:
            BackupSet.objects.create(
                created_at=at - timedelta(hours=1),
                finished_at=at - timedelta(minutes=20),
                state=SetState.GOOD,
            )
        if n == 70:  # a day without a check run: a gap in the pass rate
            continue
        run = CheckRun.objects.create(started_at=at, finished_at=at, trigger="schedule")
        statuses = {
            "backup-age": CheckStatus.FAIL if 41 <= n < 44 else CheckStatus.PASS,
            "2fa-adoption": CheckStatus.WARN if n < 60 else CheckStatus.PASS,
        }
        for k, other in enumerate(OTHERS):
            bad = (n + 7 * k) % 23 == 0
            statuses[other] = CheckStatus.FAIL if bad else CheckStatus.PASS
        for control_id, status in statuses.items():
            evidence = {"seeded": True, "day": day.isoformat()}
            if control_id == "2fa-adoption":
                evidence = {"twofa_adoption": round(0.42 + 0.005 * n, 3), "staff": 1.0}
            if control_id == "backup-age":
                evidence = {
                    "set_id": n + 1,
                    "age_hours": 0.3 if status == "pass" else 30.5,
                    "limit_hours": 26,
                    "copies": [
                        {"number": c, "state": "done", "location": loc}
                        for c, loc in ((1, "local"), (2, "second disk"), (3, "s3"))
                    ],
                }
            results.append(
                ControlResult(
                    run=run,
                    control_id=control_id,
                    checked_at=at,
                    status=status,
                    summary=f"{control_id}: {status} on {day:%d %b}",
                    evidence=evidence,
                )
            )
        for i in range((n * 7) % 11 + (25 if n == 55 else 0)):
            events.append(
                AuditEvent(
                    occurred_at=at + timedelta(minutes=i),
                    event_type="auth.login.failure",
                    outcome="failure",
                    actor_label=f"u{i}@example.test",
                )
            )
        if n % 9 == 0 or n == 55:
            Alert.objects.create(
                rule="brute_force",
                severity="high",
                subject_kind="ip",
                subject=f"192.0.2.{n}",
                summary="seeded",
                first_seen=at,
                last_seen=at,
                state=AlertState.RESOLVED if n < 80 else AlertState.OPEN,
                resolved_at=at + timedelta(days=2) if n < 80 else None,
            )
    ControlResult.objects.bulk_create(results)
    AuditEvent.objects.bulk_create(events)


def test_auditor_reads_the_cockpit_in_chromium(live_server, tmp_path):
    """The controls table and five charts render; each chart is an image with
    a title and description; nothing scrolls sideways at phone width."""
    seed()
    auditor = UserFactory(is_staff=True, email="auditor@example.test")
    auditor.groups.add(Group.objects.get_or_create(name=AUDITOR_GROUP)[0])
    device = TOTPDevice.objects.create(user=auditor, name="phone", confirmed=True)
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=6):06d}"
    shots = Path(os.environ.get("KREO_SCREENSHOT_DIR") or tmp_path)
    base = live_server.url
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(base + reverse("accounts:login"))
        page.fill("input[name=username]", auditor.email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button:has-text('Sign in')")
        page.fill("input[name=token]", code)
        page.click("button:has-text('Verify')")
        page.wait_for_url(re.compile(r"/projects/"))
        page.goto(base + reverse("admin:compliance_cockpit"))
        assert page.title().startswith("Compliance cockpit")
        row = page.locator('tr[data-control="backup-age"]')
        assert row.get_attribute("data-status") == "pass"
        assert "A.8.13" in row.inner_text()
        charts = page.locator("svg.compliance-chart")
        assert charts.count() == 5
        names = page.evaluate(
            "() => [...document.querySelectorAll('svg.compliance-chart')].map("
            "s => s.getAttribute('aria-labelledby').split(' ').map("
            "id => document.getElementById(id).textContent).join(' | '))"
        )
        assert all("Latest" in n or "latest" in n for n in names), names
        box = charts.first.bounding_box()
        assert box["width"] > 600 and box["height"] > 150
        page.screenshot(path=str(shots / "cockpit-desktop.png"), full_page=True)
        page.goto(base + reverse("admin:compliance_control", args=["backup-age"]))
        page.locator("details.evidence").first.evaluate("d => d.open = true")
        page.screenshot(path=str(shots / "cockpit-control.png"), full_page=False)
        page.set_viewport_size({"width": 390, "height": 800})
        page.goto(base + reverse("admin:compliance_cockpit"))
        wide = page.evaluate("document.documentElement.scrollWidth")
        culprits = page.evaluate(
            "() => [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > 390)"
            ".filter(e => !e.closest('.results'))"
            ".map(e => e.tagName + '.' + (e.className.baseVal ?? e.className))"
            ".slice(-5)"
        )
        assert wide <= 390, (wide, culprits)
        page.screenshot(path=str(shots / "cockpit-phone.png"), full_page=False)
        context.close()
