"""The one source of "now" (timezone-aware UTC); tests pin it with set_now()."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

_pinned: datetime | None = None


def now() -> datetime:
    return _pinned if _pinned is not None else datetime.now(timezone.utc)


def timestamp() -> int:
    return int(now().timestamp())


def set_now(value: datetime | None) -> None:
    """Pin the clock (tests only); None unpins it."""
    global _pinned
    _pinned = value


def advance(seconds: float) -> None:
    """Move a pinned clock forward (tests only)."""
    global _pinned
    _pinned = (_pinned or datetime.now(timezone.utc)) + timedelta(seconds=seconds)


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; treat them as the UTC they were stored in."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
