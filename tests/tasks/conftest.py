"""Fixtures for calling step functions directly: a StepContext and its Facts.
(Throw-away databases, `scratch_database` and `kind`, are in tests/conftest.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pendulum
import pytest

from cutover.clock import RehearsalClock
from cutover.profile import Profile, Target
from cutover.steps import StepContext


class MemoryFacts:
    """The `cutover.steps.Facts` of one test: a dict; a missing name reads as None,
    as in the ledger."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def put(self, name: str, value: Any) -> None:
        self.values[name] = value


@pytest.fixture
def facts() -> MemoryFacts:
    return MemoryFacts()


@pytest.fixture
def make_context(tmp_path: Path, facts: MemoryFacts) -> Callable[..., StepContext]:
    """`make_context({"old": Target(...)})` -> a StepContext with a rehearsal clock,
    the test's `facts` and `tmp_path/work` as its workdir."""

    def make(targets: dict[str, Target | dict[str, Any]], step_id: str = "step-1") -> StepContext:
        workdir = tmp_path / "work"
        workdir.mkdir(exist_ok=True)
        return StepContext(
            execution_id="exec-1",
            step_id=step_id,
            profile=Profile(name="test", targets=targets),
            clock=RehearsalClock(pendulum.datetime(2023, 11, 30, 18, tz="Asia/Shanghai")),
            workdir=workdir,
            facts=facts,
        )

    return make
