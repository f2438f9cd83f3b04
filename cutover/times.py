"""Wall-clock times in a runbook's time zone: parsing, checking, resolving, showing.

A runbook writes times as people do in a notice:

    2023-11-20 18:00          an absolute time in the runbook's zone
    2023-11-24 24:00          the end of 24 November, i.e. 2023-11-25 00:00
    restore-day+8h30m         a named anchor plus (or minus) a duration
    restore-day 08:30         the same: the anchor plus 8h30m (anchor at 00:00)
    restore-day+1d 08:00      both

Every problem is a `TimeProblem` whose message says what is wrong and what is
allowed, e.g. "2023-11-31 is not a date (November has 30 days)".
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import date, timedelta
from functools import cache
from zoneinfo import available_timezones

import pendulum
from pendulum import DateTime

from cutover.runbook import TimeSpec
from cutover.types import format_duration, parse_duration
from cutover.yamlmap import closest, suggest

FORMS = "'YYYY-MM-DD HH:MM', 'ANCHOR+8h30m' or 'ANCHOR 08:30'"

_WALL = re.compile(r"^(?P<date>(\d{1,4})-(\d{1,2})-(\d{1,2}))(?:[ T]+(?P<clock>\S+))?$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?$")
_DURATION = r"\d[\dhmsd.]*"
_REST = re.compile(rf"^(?:\s*(?P<sign>[+-])\s*(?P<dur>{_DURATION}))?(?:\s+(?P<clock>\S+))?\s*$")
_ANCHORED = re.compile(rf"^(?P<anchor>[a-z][a-z0-9-]*?)(?:\s*[+-]\s*{_DURATION})?(?:\s+\S+)?\s*$")


class TimeProblem(ValueError):
    """A time as written cannot be read; the message is meant for the author."""


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_problem(name: str) -> str | None:
    """None for a real IANA zone, else what is wrong with `name`."""
    if name in _zones():
        return None
    near = closest(name, sorted(_zones()))
    hint = f"did you mean '{near}'? " if near else ""
    return f"'{name}' is not an IANA time zone; {hint}write a zone such as Asia/Shanghai"


def parse_wall(text: str, tz: str) -> DateTime:
    """'2023-11-20 18:00' (or '... 24:00', the end of that day) in zone `tz`."""
    match = _WALL.match(text.strip())
    if not match:
        raise TimeProblem(f"'{text}' is not a time; write {FORMS}")
    day = _date(match.group("date"))
    if match.group("clock") is None:
        raise TimeProblem(f"{match.group('date')} has no time of day; write it like '{day} 18:00'")
    hour, minute, second = _clock(match.group("clock"))
    if hour == 24:
        day, hour = day + timedelta(days=1), 0  # 24:00 is the first moment of the next day
    moment = pendulum.datetime(day.year, day.month, day.day, hour, minute, second, tz=tz)
    if (moment.hour, moment.minute) != (hour, minute):
        raise TimeProblem(
            f"{text.strip()} does not exist in {tz} (the clocks skip it for daylight saving); "
            "pick a time outside the gap"
        )
    return moment


def _date(text: str) -> date:
    year, month, day = (int(part) for part in text.split("-"))
    if year < 1:
        raise TimeProblem(f"{text} is not a date (years start at 0001)")
    if not 1 <= month <= 12:
        raise TimeProblem(f"{text} is not a date (months run 01-12)")
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        name = calendar.month_name[month]
        which = f"{name} {year}" if month == 2 else name  # only February varies by year
        raise TimeProblem(f"{text} is not a date ({which} has {days} days)")
    return date(year, month, day)


def _clock(text: str) -> tuple[int, int, int]:
    match = _CLOCK.match(text)
    if not match:
        raise TimeProblem(f"'{text}' is not a time of day; write HH:MM, e.g. 18:00")
    hour, minute, second = (int(part or 0) for part in match.groups())
    if minute > 59 or second > 59:
        raise TimeProblem(f"{text} is not a time; minutes and seconds run 00-59")
    if hour == 24 and (minute or second):
        raise TimeProblem(
            f"{text} is not a time; hour 24 is only allowed as 24:00 (the end of the day)"
        )
    if hour > 24:
        raise TimeProblem(
            f"{text} is not a time; hours run 00-23, and 24:00 means the end of the day"
        )
    return hour, minute, second


def parse_at(text: str, tz: str, anchors: Mapping[str, DateTime | None]) -> TimeSpec:
    """A step's `at:`. `anchors` maps each declared anchor to its time (None if unreadable)."""
    text = text.strip()
    if re.match(r"^\d{1,4}-", text):
        return TimeSpec(text=text, absolute=parse_wall(text, tz))
    # Longest declared name first, so `go-live-2h` is anchor `go-live` minus 2h.
    for name in sorted(anchors, key=len, reverse=True):
        if text == name or (text.startswith(name) and text[len(name)] in "+- \t"):
            offset, clock = _offset(text, text[len(name) :])
            _check_clock_form(text, name, anchors[name], clock)
            return TimeSpec(text=text, anchor=name, offset=offset)
    match = _ANCHORED.match(text)
    if not match:
        raise TimeProblem(f"'{text}' is not a time; write {FORMS}")
    name = match.group("anchor")
    if not anchors:
        raise TimeProblem(
            f"unknown anchor '{name}'; this runbook declares no anchors: add it under anchors:, "
            "or write a time like 2023-12-01 08:00"
        )
    raise TimeProblem(
        f"unknown anchor '{name}'; " + suggest(name, sorted(anchors), "declared anchors")
    )


def _offset(text: str, rest: str) -> tuple[timedelta, str | None]:
    match = _REST.match(rest)
    if not match:
        raise TimeProblem(f"'{text}' is not a time; write {FORMS}")
    offset = timedelta(0)
    if match.group("dur"):
        try:
            offset = parse_duration(match.group("dur"))
        except ValueError as exc:
            raise TimeProblem(str(exc)) from None
        if match.group("sign") == "-":
            offset = -offset
    clock = match.group("clock")
    if clock is not None:
        hour, minute, second = _clock(clock)
        offset += timedelta(hours=hour, minutes=minute, seconds=second)
    return offset, clock


def _check_clock_form(text: str, name: str, anchor: DateTime | None, clock: str | None) -> None:
    # 'restore-day 08:30' reads as "08:30 on restore day"; that only holds when
    # the anchor is at midnight, so anything else is a trap worth refusing.
    if clock is None or anchor is None or (anchor.hour, anchor.minute, anchor.second) == (0, 0, 0):
        return
    hour, minute, second = _clock(clock)
    added = anchor + timedelta(hours=hour, minutes=minute, seconds=second)
    wanted = anchor.start_of("day") + timedelta(hours=hour, minutes=minute, seconds=second)
    shift = wanted - anchor
    sign = "-" if shift < timedelta(0) else "+"
    raise TimeProblem(
        f"'{text}' means {name}+{format_duration(added - anchor)} ({show(added)}), because {name} "
        f"is at {anchor.format('HH:mm')}, not 00:00; for {clock} that day write "
        f"{name}{sign}{format_duration(abs(shift))}"
    )


def resolve(spec: TimeSpec, anchors: Mapping[str, DateTime]) -> DateTime:
    """The absolute time of `spec`; anchored specs use `anchors` (KeyError if absent)."""
    if spec.absolute is not None:
        return spec.absolute
    assert spec.anchor is not None  # a TimeSpec is either absolute or anchored
    return anchors[spec.anchor] + spec.offset


def show(moment: DateTime, written: str | None = None) -> str:
    """'Mon 2023-11-20 18:00'; a time written as 24:00 also says which day it ends."""
    text = moment.format("ddd YYYY-MM-DD HH:mm")
    if written and "24:00" in written:
        text += f" (end of {moment.subtract(days=1).format('ddd MM-DD')})"
    return text
