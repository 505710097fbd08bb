"""The deadline engine: when a data-subject request must be acknowledged and answered.

- GDPR / UK GDPR (Art. 12(3)): one calendar month from receipt; extendable by two further
  months with a reason, notified before the first deadline.
- CCPA/CPRA (regs §7021, §7026): acknowledge within 10 business days; respond within 45
  calendar days, extendable once by 45 with notice and reason; opt-out of sale/share within
  15 business days.
- LGPD (Art. 19): 15 days for a complete answer.
- Voluntary: 30 days.
Business days skip Saturdays, Sundays and the regime's public holidays (none are assumed by
default; a workspace may list them). Deadlines are inclusive end-of-day in UTC.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from governance.enums import Regime, RequestType


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_business_days(day: date, count: int, holidays: Iterable[date] = ()) -> date:
    skip = set(holidays)
    current = day
    added = 0
    while added < count:
        current += timedelta(days=1)
        if current.weekday() < 5 and current not in skip:
            added += 1
    return current


@dataclass(frozen=True)
class Deadlines:
    acknowledge_by: date | None
    respond_by: date
    max_extended_to: date | None  # the latest an extension may push the answer to


def deadlines_for(
    *, regime: str, request_type: str, received: date, holidays: Iterable[date] = ()
) -> Deadlines:
    if regime in (Regime.GDPR, Regime.UK_GDPR):
        return Deadlines(
            acknowledge_by=None,
            respond_by=add_months(received, 1),
            max_extended_to=add_months(received, 3),
        )
    if regime == Regime.CCPA:
        if request_type == RequestType.OPT_OUT:
            respond = add_business_days(received, 15, holidays)
            return Deadlines(acknowledge_by=None, respond_by=respond, max_extended_to=None)
        return Deadlines(
            acknowledge_by=add_business_days(received, 10, holidays),
            respond_by=received + timedelta(days=45),
            max_extended_to=received + timedelta(days=90),
        )
    if regime == Regime.LGPD:
        return Deadlines(
            acknowledge_by=None, respond_by=received + timedelta(days=15), max_extended_to=None
        )
    return Deadlines(
        acknowledge_by=None, respond_by=received + timedelta(days=30), max_extended_to=None
    )


def end_of_day(day: date) -> datetime:
    """A deadline day as the last second of that day, UTC."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
