"""Calendar months ('YYYY-MM') in an account's time zone, as usage rollups and monthly limits count them."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.errors import DomainError

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})", re.ASCII)  # int() would take any digits


class InvalidMonth(DomainError):
    pass


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> "Month":
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def bounds(self, time_zone: str) -> tuple[datetime, datetime]:
        """The month's first instant and the next month's first instant, in UTC."""
        zone = zone_of(time_zone)
        following = self.next()
        start = datetime(self.year, self.month, 1, tzinfo=zone)
        end = datetime(following.year, following.month, 1, tzinfo=zone)
        return start.astimezone(UTC), end.astimezone(UTC)


def parse_month(text: str) -> Month:
    match = _MONTH.fullmatch(text.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise InvalidMonth("must be a month as YYYY-MM, e.g. 2026-03")
    return Month(int(match.group(1)), int(match.group(2)))


def zone_of(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        # An account row with a bad zone must not break billing; UTC is the documented fallback.
        return ZoneInfo("UTC")


def month_of(moment: datetime, time_zone: str) -> Month:
    """The calendar month `moment` falls in, as seen on a wall clock in `time_zone`."""
    local = moment.astimezone(zone_of(time_zone))
    return Month(local.year, local.month)
