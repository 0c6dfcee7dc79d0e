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


DEFAULT_PARTITION = "month={month}"
# What each placeholder of a partition template stands for, and the text it matches.
_PLACEHOLDERS = {
    "month": r"(?P<month>\d{4}-(?:0[1-9]|1[0-2]))",
    "year": r"(?P<year>\d{4})",
    "mm": r"(?P<mm>0[1-9]|1[0-2])",
    "m": r"(?P<m>[1-9]|1[0-2])",
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class PartitionError(ValueError):
    """A partition template that cannot name every month one way."""


class Partitioning:
    """Where a dataset keeps each month: a folder template under the dataset's root.

    `month={month}` (the default) is `month=2025-01`; Spark's `partitionBy("year", "month")` writes
    `year={year}/month={m}` (`year=2025/month=1`); `{year}/{mm}` is `2025/01`; `dt={year}-{mm}-01` is
    `dt=2025-01-01`. A month's data files sit directly in its folder.
    """

    def __init__(self, template: str = DEFAULT_PARTITION) -> None:
        names = _PLACEHOLDER.findall(template)
        literal = _PLACEHOLDER.sub("", template)
        if set(names) - set(_PLACEHOLDERS) or "{" in literal or "}" in literal:
            known = ", ".join("{" + n + "}" for n in _PLACEHOLDERS)
            raise PartitionError(f"use only the placeholders {known}, got {template!r}")
        if len(names) != len(set(names)):
            raise PartitionError(f"each placeholder may appear once, got {template!r}")
        if set(names) not in ({"month"}, {"year", "mm"}, {"year", "m"}):
            raise PartitionError(f"name the month once: {{month}}, or {{year}} with {{mm}} or {{m}}; got {template!r}")
        parts = template.split("/")
        if template.startswith("/") or template.endswith("/") or any(p in ("", ".", "..") for p in parts):
            raise PartitionError(f"must be a relative folder path without empty, '.' or '..' parts, got {template!r}")
        self.template = template
        self.prefix = template[: template.index("{")]  # listing starts here: nothing before it varies
        pieces = _PLACEHOLDER.split(template)  # literal, name, literal, name, ..., literal
        self._pattern = re.compile(
            "^"
            + "".join(_PLACEHOLDERS[p] if i % 2 else re.escape(p) for i, p in enumerate(pieces))
            + "/(?P<file>[^/]+)$"
        )

    def folder(self, month: str) -> str:
        year, number = month.split("-")
        return self.template.format(month=month, year=year, mm=number, m=int(number))

    def month_of(self, key: str) -> str | None:
        """The month of a file directly inside a month's folder (a key relative to the dataset root)."""
        match = self._pattern.match(key)
        if match is None:
            return None
        found = match.groupdict()
        if found.get("month"):
            return found["month"]
        return f"{found['year']}-{int(found.get('mm') or found['m']):02d}"

    def __repr__(self) -> str:
        return f"Partitioning({self.template!r})"
