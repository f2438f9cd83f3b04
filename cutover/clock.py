"""Clocks: the wall clock for a real cutover, a rehearsal clock for seconds-long rehearsals.

Both have the same interface, so the very same plan and tasks run under either.
Times are timezone-aware pendulum DateTimes.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Protocol

import pendulum
from pendulum import DateTime


class Clock(Protocol):
    def now(self) -> DateTime: ...

    def sleep_until(self, when: DateTime) -> None: ...

    def sleep(self, seconds: float) -> None: ...

    @property
    def rehearsal(self) -> bool: ...


class WallClock:
    """Real time. Sleeps in short chunks so a cancel or a kill is never held up long."""

    rehearsal = False

    def __init__(self, tz: str = "Asia/Shanghai", *, chunk: float = 30.0) -> None:
        self._tz = pendulum.timezone(tz)
        self._chunk = chunk

    def now(self) -> DateTime:
        return pendulum.now(self._tz)

    def sleep_until(self, when: DateTime) -> None:
        while (left := (when - self.now()).total_seconds()) > 0:
            time.sleep(min(left, self._chunk))

    def sleep(self, seconds: float) -> None:
        self.sleep_until(self.now() + timedelta(seconds=seconds))


class RehearsalClock:
    """Virtual time that jumps to each deadline.

    `pace` real seconds pass at every jump, so a person can follow a rehearsal in
    the UI and so embedded servers (which run in real time) get a moment to act.
    Thread-safe: gates may poll while another thread reads the time.
    """

    rehearsal = True

    def __init__(self, start: DateTime, *, pace: float = 0.0) -> None:
        self._now = start
        self._pace = pace
        self._lock = threading.Lock()

    def now(self) -> DateTime:
        with self._lock:
            return self._now

    def sleep_until(self, when: DateTime) -> None:
        with self._lock:
            if when > self._now:
                self._now = when
        if self._pace:
            time.sleep(self._pace)

    def sleep(self, seconds: float) -> None:
        # Virtual waits also yield a little real time: a receiver agent or a
        # server restarting in the sandbox needs it to make progress.
        with self._lock:
            self._now = self._now + timedelta(seconds=seconds)
        time.sleep(min(0.05 + self._pace, seconds))
