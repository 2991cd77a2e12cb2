"""Helpers the checks share: evidence that serialises to JSON."""

from __future__ import annotations

from datetime import datetime


def iso(moment: datetime | None) -> str | None:
    """A time as ISO 8601 for the evidence (None stays None)."""
    return moment.isoformat() if moment else None


def hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def sentence(parts: list[str]) -> str:
    """Problems joined into one sentence, its first letter upper case."""
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."
