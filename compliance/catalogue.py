"""The controls catalogue: each control, what it maps to, and its check.

A control is code, reviewed like code: an id, a title, the ISO 27001:2022
Annex A controls and SOC 2 criteria it maps to, the check function and a
sentence on the evidence it collects. Checks live in ``compliance/checks.py``
and register here with ``@control(...)``.

A check takes the moment it is judged at (``now``; tests move it) and
returns an ``Outcome``; it reads other apps only through their selectors
or health checks. It never writes. A check that raises is recorded as
"error" with its message by ``services.checks_run``; the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from compliance.models import CheckStatus


@dataclass(frozen=True)
class Outcome:
    status: str  # a CheckStatus value
    summary: str
    evidence: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in CheckStatus.values:
            raise ValueError(f"unknown status {self.status!r}")


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    iso27001: tuple[str, ...]
    soc2: tuple[str, ...]
    evidence: str
    check: Callable[[datetime], Outcome]


_CONTROLS: dict[str, Control] = {}


def control(
    *, id: str, title: str, iso27001: tuple, soc2: tuple, evidence: str
) -> Callable:
    """Register the decorated check function as a control."""

    def register(check: Callable[[datetime], Outcome]) -> Callable:
        if id in _CONTROLS:
            raise ValueError(f"control {id} registered twice")
        _CONTROLS[id] = Control(
            id=id,
            title=title,
            iso27001=tuple(iso27001),
            soc2=tuple(soc2),
            evidence=evidence,
            check=check,
        )
        return check

    return register


def controls() -> list[Control]:
    """Every control, in catalogue order."""
    from compliance import checks  # noqa: F401 - registers the controls

    return list(_CONTROLS.values())


def control_get(control_id: str) -> Control:
    controls()
    return _CONTROLS[control_id]
