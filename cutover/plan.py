"""The plan: every step of a runbook at an absolute time, in execution order.

Phases run in the order written. Within a phase, steps run by time, then in
file order. A step without `at:` runs as soon as the steps it follows are done,
so for planning it gets the time of its latest dependency (or, without
dependencies, of the step above it) and is flagged `timed=False`.

Anchors can be overridden when planning: a rollback runbook anchors on the
moment the rollback starts, which is only known when it is triggered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import pendulum
from pendulum import DateTime

from cutover.errors import PlanError
from cutover.runbook import Phase, Runbook, Step
from cutover.times import resolve, show


@dataclass(frozen=True)
class PlannedStep:
    index: int  # position in execution order, from 0
    phase: Phase
    step: Step
    at: DateTime  # in the runbook's zone
    timed: bool  # False: derived from dependencies, runs as soon as they are done

    @property
    def id(self) -> str:
        return self.step.id

    @property
    def after(self) -> tuple[str, ...]:
        return self.step.after


@dataclass(frozen=True)
class Plan:
    runbook: Runbook
    anchors: dict[str, DateTime]  # after overrides
    steps: list[PlannedStep]

    @property
    def timezone(self) -> str:
        return self.runbook.timezone

    @property
    def start(self) -> DateTime:
        return min(p.at for p in self.steps)

    @property
    def end(self) -> DateTime:
        return max(p.at for p in self.steps)

    def get(self, step_id: str) -> PlannedStep:
        for planned in self.steps:
            if planned.step.id == step_id:
                return planned
        raise KeyError(f"step {step_id!r} is not in runbook {self.runbook.name!r}")

    def dependencies(self, step_id: str) -> list[PlannedStep]:
        return [self.get(dep) for dep in self.get(step_id).after]


def earliest_times(
    steps: Sequence[tuple[str, Sequence[str], DateTime | None]],
    *,
    start: DateTime | None = None,
    chain: bool = False,
) -> dict[str, DateTime | None]:
    """Time of each (id, after, fixed time) in file order; untimed steps follow
    their latest dependency, or with `chain` the step above them (then `start`)."""
    out: dict[str, DateTime | None] = {}
    previous = start
    for step_id, after, fixed in steps:
        at = fixed
        if at is None:
            known = [t for dep in after if (t := out.get(dep)) is not None]
            at = max(known) if known else (previous if chain else None)
        out.setdefault(step_id, at)
        previous = at if at is not None else previous
    return out


def build_plan(runbook: Runbook, *, anchors: Mapping[str, datetime] | None = None) -> Plan:
    """Place every step of a loaded runbook in time and order."""
    tz = pendulum.timezone(runbook.timezone)
    resolved = _anchors(runbook, anchors or {}, tz)
    pairs = runbook.steps()
    fixed = {s.id: resolve(s.at, resolved).in_timezone(tz) if s.at else None for _, s in pairs}
    start = _start(runbook, fixed, resolved)
    rows = [(s.id, s.after, fixed[s.id]) for _, s in pairs]
    times = earliest_times(rows, start=start, chain=True)
    _check_order(pairs, fixed, times)
    ordered: list[PlannedStep] = []
    for phase in runbook.phases:
        by_time = sorted(enumerate(phase.steps), key=lambda item: (times[item[1].id], item[0]))
        for _, step in by_time:
            at = times[step.id]
            assert at is not None  # `start` guarantees every step a time
            ordered.append(PlannedStep(len(ordered), phase, step, at, step.at is not None))
    return Plan(runbook=runbook, anchors=resolved, steps=ordered)


def _anchors(
    runbook: Runbook, overrides: Mapping[str, datetime], tz: pendulum.Timezone
) -> dict[str, DateTime]:
    unknown = sorted(set(overrides) - set(runbook.anchors))
    if unknown:
        declared = ", ".join(sorted(runbook.anchors)) or "(none)"
        raise PlanError(
            f"runbook {runbook.name} has no anchor {', '.join(unknown)}; declared anchors: {declared}"
        )
    out = {name: at.in_timezone(tz) for name, at in runbook.anchors.items()}
    for name, at in overrides.items():
        if not isinstance(at, datetime):
            raise PlanError(f"anchor {name}: {at!r} is not a date and time")
        # A naive time is read in the runbook's zone, as the runbook's own times are.
        out[name] = pendulum.instance(at, tz=tz).in_timezone(tz)
    return out


def _start(
    runbook: Runbook, fixed: Mapping[str, DateTime | None], anchors: Mapping[str, DateTime]
) -> DateTime:
    # Untimed steps at the very top start with the earliest known moment.
    known = [t for t in fixed.values() if t is not None] or list(anchors.values())
    if not known:
        raise PlanError(
            f"runbook {runbook.name} has no timed step and no anchor; "
            "give one step an at: time, or declare an anchor"
        )
    return min(known)


def _check_order(
    pairs: Sequence[tuple[Phase, Step]],
    fixed: Mapping[str, DateTime | None],
    times: Mapping[str, DateTime | None],
) -> None:
    # The loader checks this with the runbook's own anchors; overrides can
    # still move an anchored step before an absolute one it follows.
    for _, step in pairs:
        at = fixed[step.id]
        for dep in step.after:
            before = times.get(dep)
            if at is not None and before is not None and at < before:
                raise PlanError(
                    f"step {step.id} at {show(at)} would run before {dep} ({show(before)}), "
                    "which it follows; check the anchor overrides"
                )
