"""Months as the project names them: 'YYYY-MM' strings, compared and shifted without a calendar library."""

from __future__ import annotations

import re
from datetime import date, datetime

MONTH_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def is_month(value: object) -> bool:
    return isinstance(value, str) and bool(MONTH_PATTERN.match(value))


def shift_month(month: str, delta: int) -> str:
    year, number = map(int, month.split("-"))
    index = year * 12 + (number - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_of(moment: date | datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def previous_complete_month(today: date | datetime) -> str:
    """The last month that has fully ended before `today`."""
    return shift_month(month_of(today), -1)
