"""The time rules of a release policy: durations, weekly windows and freeze windows.

Split from :mod:`ferry_promotion.domain.policies` (the schema and parser), which uses them.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ferry_events import DNS_LABEL

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
DEFAULT_APPROVAL_EXPIRY = timedelta(hours=24)


def parse_duration(value: object) -> timedelta:
    """``90`` (seconds), ``"30m"``, ``"24h"``, ``"2d"``, ``"1h30m"`` -> timedelta."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value and (match := _DURATION.fullmatch(value.strip())):
        parts = {k: int(v) for k, v in match.groupdict().items() if v}
        seconds = float(
            parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60
        ) + float(parts.get("s", 0))
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        raise ValueError(f"{value!r} is not a duration such as 30m, 24h or 2d")
    if seconds <= 0 or seconds > 90 * 86400:
        raise ValueError("must be more than 0 seconds and at most 90 days")
    return timedelta(seconds=seconds)


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday is 0, as ``datetime.weekday()`` counts."""
        return list(Weekday).index(self)


class PolicyModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


def environment_name(value: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment name (a lowercase DNS label)")
    return value


class WeeklyWindow(PolicyModel):
    """Every week on ``days`` from ``start`` to ``end`` (local time); an end at or before the
    start runs past midnight into the next day."""

    days: list[Weekday] = Field(min_length=1)
    start: time
    end: time

    def contains(self, local: datetime) -> bool:
        day = local.weekday()
        moment = local.time().replace(tzinfo=None)
        days = {d.number for d in self.days}
        if self.start < self.end:
            return day in days and self.start <= moment < self.end
        return (day in days and moment >= self.start) or (
            (day - 1) % 7 in days and moment < self.end
        )


class FreezeWindow(PolicyModel):
    """No releases to ``environment`` during this window, unless an admin overrides it."""

    environment: str
    timezone: str = "UTC"
    reason: str = Field(default="", max_length=500)
    start: datetime | None = None
    end: datetime | None = None
    weekly: WeeklyWindow | None = None

    _env = field_validator("environment")(environment_name)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Copenhagen"
            ) from exc
        return value

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError(
                "write the local time without an offset (e.g. 2026-12-20T00:00); "
                "the window's timezone field says which zone it is in"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> FreezeWindow:
        absolute = self.start is not None or self.end is not None
        if absolute and self.weekly is not None:
            raise ValueError("a window is either absolute (start and end) or weekly, not both")
        if not absolute and self.weekly is None:
            raise ValueError("a window needs start and end, or weekly")
        if absolute:
            if self.start is None or self.end is None:
                raise ValueError("an absolute window needs both start and end")
            if self.end <= self.start:
                raise ValueError("end must be after start")
        return self

    def contains(self, now: datetime) -> bool:
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        if self.weekly is not None:
            return self.weekly.contains(local)
        assert self.start is not None
        assert self.end is not None
        return self.start.replace(tzinfo=zone) <= local < self.end.replace(tzinfo=zone)

    def describe(self) -> str:
        if self.weekly is not None:
            days = ",".join(d.value for d in self.weekly.days)
            span = f"weekly {days} {self.weekly.start:%H:%M}-{self.weekly.end:%H:%M}"
        else:
            assert self.start is not None
            assert self.end is not None
            span = f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M}"
        return f"{span} {self.timezone}" + (f" ({self.reason})" if self.reason else "")
