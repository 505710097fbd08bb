"""Deadlines per regime, with extensions and business days."""

from __future__ import annotations

from datetime import date

import pytest

from governance.deadlines import add_business_days, add_months, deadlines_for
from governance.enums import Regime, RequestType


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (date(2026, 1, 15), date(2026, 2, 15)),
        (date(2026, 1, 31), date(2026, 2, 28)),  # clamped to the month's end
        (date(2028, 1, 31), date(2028, 2, 29)),  # leap year
        (date(2026, 12, 31), date(2027, 1, 31)),
    ],
)
def test_gdpr_answer_is_due_one_calendar_month_later(received: date, expected: date) -> None:
    # when
    deadlines = deadlines_for(
        regime=Regime.GDPR, request_type=RequestType.ACCESS, received=received
    )
    # then
    assert deadlines.respond_by == expected
    assert deadlines.acknowledge_by is None


def test_gdpr_may_be_extended_by_two_further_months() -> None:
    # when
    deadlines = deadlines_for(
        regime=Regime.UK_GDPR, request_type=RequestType.ERASURE, received=date(2026, 11, 30)
    )
    # then
    assert deadlines.max_extended_to == date(2027, 2, 28)


def test_ccpa_acknowledges_in_ten_business_days_and_answers_in_45_plus_45() -> None:
    # given: Friday 27 November 2026
    received = date(2026, 11, 27)
    # when
    deadlines = deadlines_for(
        regime=Regime.CCPA, request_type=RequestType.ACCESS, received=received
    )
    # then
    assert deadlines.acknowledge_by == date(2026, 12, 11)  # two working weeks later
    assert deadlines.respond_by == date(2027, 1, 11)
    assert deadlines.max_extended_to == date(2027, 2, 25)


def test_ccpa_opt_out_is_due_in_15_business_days_skipping_holidays() -> None:
    # given
    received = date(2026, 12, 18)  # a Friday
    holidays = [date(2026, 12, 25), date(2027, 1, 1)]
    # when
    deadlines = deadlines_for(
        regime=Regime.CCPA,
        request_type=RequestType.OPT_OUT,
        received=received,
        holidays=holidays,
    )
    # then
    assert deadlines.respond_by == date(2027, 1, 12)
    assert deadlines.max_extended_to is None


def test_lgpd_answers_within_15_days_and_voluntary_within_30() -> None:
    # when
    lgpd = deadlines_for(
        regime=Regime.LGPD, request_type=RequestType.ACCESS, received=date(2026, 3, 1)
    )
    voluntary = deadlines_for(
        regime=Regime.VOLUNTARY, request_type=RequestType.ACCESS, received=date(2026, 3, 1)
    )
    # then
    assert lgpd.respond_by == date(2026, 3, 16)
    assert voluntary.respond_by == date(2026, 3, 31)


def test_business_days_skip_weekends() -> None:
    # when / then: Friday + 1 business day is Monday
    assert add_business_days(date(2026, 11, 27), 1) == date(2026, 11, 30)
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
