"""Operations: alerts handled within their SLA (A.8.16, A.5.26), TLS and
security headers (A.8.20, A.8.24), dependencies pinned and free of known
vulnerabilities (A.8.8, A.8.25)."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.checks import Tags
from django.core.checks.registry import registry

from compliance.catalogue import Outcome, control
from compliance.checks.common import hours, iso
from compliance.models import CheckStatus
from monitoring import selectors as monitoring_selectors

# Time to resolve an alert, by severity.
ALERT_SLA = {
    "critical": timedelta(hours=4),
    "high": timedelta(hours=24),
    "medium": timedelta(days=3),
    "low": timedelta(days=7),
}

PRODUCTION_SETTINGS = "kreo.settings.production"
# Deploy checks about transport and headers: Django's own (HSTS, SSL redirect,
# secure cookies, nosniff, referrer, COOP, X-Frame-Options) and kreo's check
# that every link to a backing service is encrypted.
TLS_CHECK_PREFIXES = ("security.", "kreo.E135")

# The last `pip-audit -r requirements.txt -f json -o <this>` run, relative to
# VAR_DIR; older than this many days it no longer counts.
PIP_AUDIT_REPORT = Path("compliance") / "pip-audit.json"
PIP_AUDIT_MAX_AGE_DAYS = 7
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,.-]+\])?==[^\s=;]+")


@control(
    id="alert-sla",
    title="No alert left unresolved past its SLA",
    iso27001=("A.8.16", "A.5.26"),
    soc2=("CC7.3", "CC7.4"),
    evidence="The SLA by severity and every unresolved alert: id, rule, "
    "severity, subject, state, first seen, age, whether overdue.",
)
def alert_sla(now: datetime) -> Outcome:
    alerts = monitoring_selectors.alerts_unresolved()
    rows, overdue = [], 0
    for alert in alerts:
        sla = ALERT_SLA.get(alert.severity, ALERT_SLA["low"])
        late = now - alert.first_seen > sla
        overdue += late
        rows.append(
            {
                "id": alert.pk,
                "rule": alert.rule,
                "severity": alert.severity,
                "subject": f"{alert.subject_kind}:{alert.subject}",
                "state": alert.state,
                "first_seen": iso(alert.first_seen),
                "age_hours": hours((now - alert.first_seen).total_seconds()),
                "sla_hours": hours(sla.total_seconds()),
                "overdue": late,
            }
        )
    evidence = {
        "sla_hours": {k: hours(v.total_seconds()) for k, v in ALERT_SLA.items()},
        "unresolved": rows,
        "overdue": overdue,
    }
    if overdue:
        ids = ", ".join(str(r["id"]) for r in rows if r["overdue"])[:200]
        return Outcome(
            CheckStatus.FAIL,
            f"{overdue} of {len(rows)} unresolved alert(s) past their SLA ({ids}).",
            evidence,
        )
    return Outcome(
        CheckStatus.PASS,
        f"{len(rows)} unresolved alert(s), none past its SLA.",
        evidence,
    )


@control(
    id="tls-headers",
    title="TLS everywhere and the security headers set (deploy checks)",
    iso27001=("A.8.20", "A.8.21", "A.8.24", "A.8.12"),
    soc2=("CC6.1", "CC6.7"),
    evidence="The settings module and every finding of `check --deploy` on "
    "transport and headers (check id, level, message), silenced ones apart.",
)
def tls_headers(now: datetime) -> Outcome:
    found = registry.run_checks(tags=[Tags.security], include_deployment_checks=True)
    relevant = [m for m in found if (m.id or "").startswith(TLS_CHECK_PREFIXES)]
    findings = [
        {"id": m.id, "level": m.level, "message": str(m.msg)[:300]}
        for m in relevant
        if not m.is_silenced()
    ]
    # What Django loaded the settings from (override_settings hides
    # settings.SETTINGS_MODULE behind None).
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE
    evidence = {
        "settings_module": module,
        "findings": findings,
        "silenced": sorted({m.id for m in relevant if m.is_silenced()}),
        "hsts_seconds": settings.SECURE_HSTS_SECONDS,
        "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    }
    ids = ", ".join(f["id"] for f in findings)
    if module != PRODUCTION_SETTINGS:
        return Outcome(
            CheckStatus.NOT_APPLICABLE,
            f"Not the production settings ({module}): this "
            "instance is not served over TLS by design; deploy checks would "
            f"report: {ids or 'nothing'}.",
            evidence,
        )
    if findings:
        return Outcome(
            CheckStatus.FAIL, f"{len(findings)} deploy finding(s): {ids}.", evidence
        )
    return Outcome(
        CheckStatus.PASS,
        "check --deploy reports nothing on TLS, cookies or headers.",
        evidence,
    )


def _requirements() -> dict[str, list[str]]:
    """Unpinned requirement lines, by file."""
    loose: dict[str, list[str]] = {}
    for name in REQUIREMENTS:
        path = Path(settings.BASE_DIR) / name
        lines = path.read_text(encoding="utf-8").splitlines()
        for line in lines:
            text = line.split("#", 1)[0].strip()
            if not text or text.startswith(("-c ", "-r ", "--")):
                continue
            if not PINNED.match(text):
                loose.setdefault(name, []).append(text)
        loose.setdefault(name, [])
    return loose


def _pins() -> dict[str, str]:
    """Package name (normalised) -> pinned version, from requirements.txt."""
    pins = {}
    path = Path(settings.BASE_DIR) / REQUIREMENTS[0]
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PINNED.match(line.split("#", 1)[0].strip())
        if match:
            name, version = match.group(0).split("==")
            pins[_norm(name.split("[")[0])] = version
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@control(
    id="dependencies-pinned",
    title="Every dependency pinned to one version",
    iso27001=("A.8.25", "A.8.32"),
    soc2=("CC8.1",),
    evidence="Each requirements file and its lines not pinned with ==.",
)
def dependencies_pinned(now: datetime) -> Outcome:
    loose = _requirements()
    count = sum(len(v) for v in loose.values())
    evidence = {"files": list(REQUIREMENTS), "unpinned": loose}
    if count:
        first = next(line for lines in loose.values() for line in lines)
        return Outcome(
            CheckStatus.FAIL,
            f"{count} requirement(s) not pinned (first: {first}).",
            evidence,
        )
    return Outcome(CheckStatus.PASS, "Every requirement is pinned with ==.", evidence)


def _not_checked(why: str, evidence: dict) -> Outcome:
    return Outcome(CheckStatus.NOT_CHECKED, why, evidence)


@control(
    id="dependencies-vulnerabilities",
    title="No pinned dependency with a known vulnerability (pip-audit)",
    iso27001=("A.8.8", "A.8.25"),
    soc2=("CC7.1", "CC8.1"),
    evidence="The last pip-audit report: when it ran, packages audited, "
    "advisories found (package, version, advisory id, fixed in); or why no "
    "report counts.",
)
def dependencies_vulnerabilities(now: datetime) -> Outcome:
    path = Path(settings.VAR_DIR) / PIP_AUDIT_REPORT
    evidence: dict = {"report": str(path), "max_age_days": PIP_AUDIT_MAX_AGE_DAYS}
    if not path.exists():
        return _not_checked(
            "Not checked: no pip-audit report. Run `make pip-audit` (pip-audit "
            f"-r requirements.txt -f json -o {path}) where an advisory source "
            "(PyPI's JSON API or OSV) is reachable; until then nothing is known "
            "either way.",
            evidence,
        )
    ran = datetime.fromtimestamp(path.stat().st_mtime, tz=now.tzinfo)
    evidence["ran_at"] = iso(ran)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        deps = report["dependencies"]
    except (ValueError, KeyError, TypeError) as exc:
        return _not_checked(
            f"Not checked: the pip-audit report is unreadable ({exc}).", evidence
        )
    if (now - ran).days > PIP_AUDIT_MAX_AGE_DAYS:
        return _not_checked(
            f"Not checked: the last pip-audit report is {(now - ran).days} days old "
            f"(limit {PIP_AUDIT_MAX_AGE_DAYS}).",
            evidence,
        )
    # pip-audit prints "No known vulnerabilities found" and exits 0 even when
    # it skipped every package (no advisory source answered for it): a
    # skipped package is not audited.
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = {
        _norm(d.get("name", "")): d.get("version") for d in deps if d not in skipped
    }
    missing = sorted(
        f"{name}=={version}"
        for name, version in _pins().items()
        if audited.get(name) != version
    )
    vulns = [
        {
            "package": d.get("name"),
            "version": d.get("version"),
            "id": v.get("id"),
            "aliases": v.get("aliases", []),
            "fix_versions": v.get("fix_versions", []),
        }
        for d in deps
        for v in d.get("vulns") or []
    ]
    evidence.update(
        {
            "audited": len(audited),
            "not_audited": missing,
            "skip_reasons": [d["skip_reason"] for d in skipped[:10]],
            "vulnerabilities": vulns,
        }
    )
    if vulns:
        first = vulns[0]
        return Outcome(
            CheckStatus.FAIL,
            f"{len(vulns)} known vulnerabilit(ies), first {first['id']} in "
            f"{first['package']} {first['version']}.",
            evidence,
        )
    if missing:
        return _not_checked(
            f"Not checked: {len(missing)} pinned package(s) not audited by the last "
            f"pip-audit run (first: {missing[0]}"
            + (f"; {skipped[0]['skip_reason']}" if skipped else "")
            + ").",
            evidence,
        )
    return Outcome(
        CheckStatus.PASS,
        f"pip-audit found no known vulnerability in {len(audited)} packages.",
        evidence,
    )
