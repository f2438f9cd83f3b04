"""The plan: every step of a runbook at an absolute time, in execution order.

Phases run in the order written. Within a phase, steps run by time, then in
file order. A step without `at:` runs as soon as the steps it follows are done,
so for planning it gets the time of its latest dependency (or, without
dependencies, of the step above it) and is flagged `timed=False`.

Anchors can be overridden when planning: a rollback runbook anchors on the
moment the rollback starts, which is only known when it is triggered.

The dependency rules (known steps, above only, no cycles, not timed before a
step followed) live here too; the loader reports them with file positions.
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
from cutover.yamlmap import closest


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


Row = tuple[str, Sequence[str], DateTime | None]  # step id, the ids it follows, its own time


def earliest_times(
    rows: Sequence[Row], *, start: DateTime | None = None, chain: bool = False
) -> dict[str, DateTime | None]:
    """Time of each step in file order; untimed steps follow their latest
    dependency or, with `chain`, the step above them (the first one: `start`)."""
    out: dict[str, DateTime | None] = {}
    previous = start
    for step_id, after, fixed in rows:
        at = fixed
        if at is None:
            known = [t for dep in after if (t := out.get(dep)) is not None]
            at = max(known) if known else (previous if chain else None)
        out.setdefault(step_id, at)
        previous = at if at is not None else previous
    return out


def order_conflicts(
    rows: Sequence[Row], times: Mapping[str, DateTime | None]
) -> list[tuple[int, str, DateTime, DateTime]]:
    """(row, dependency, time, dependency's time) for each step timed before a
    step above it that it follows (at most one per step)."""
    above: set[str] = set()
    out = []
    for i, (step_id, after, at) in enumerate(rows):
        for dep in after:
            before = times.get(dep) if dep in above else None
            if at is not None and before is not None and at < before:
                out.append((i, dep, at, before))
                break
        above.add(step_id)
    return out


def dependency_problems(
    ids: Sequence[str | None], after: Sequence[Sequence[str]], lines: Sequence[int]
) -> list[tuple[int, int, str]]:
    """(step, entry, message) for each `after:` entry that names an unknown step,
    a step further down, or closes a cycle. Steps are given in file order."""
    first: dict[str, int] = {}
    for row, ident in enumerate(ids):
        if ident is not None:
            first.setdefault(ident, row)
    problems, in_cycles = _cycle_problems(after, first)
    for row, deps in enumerate(after):
        for entry, dep in enumerate(deps):
            target = first.get(dep)
            if target is None:
                near = closest(dep, first)
                hint = f"did you mean '{near}'?" if near else "after names the ids of steps above"
                problems.append((row, entry, f"'{dep}' is not a step of this runbook; {hint}"))
            elif target > row and (ids[row], dep) not in in_cycles:
                message = f"'{dep}' comes later (line {lines[target]}); "
                problems.append((row, entry, message + "a step can only follow steps above it"))
    return problems


def _cycle_problems(
    after: Sequence[Sequence[str]], first: Mapping[str, int]
) -> tuple[list[tuple[int, int, str]], set[tuple[str | None, str]]]:
    """Each cycle once, at its first step in the file; and the edges in cycles."""
    graph = {ident: [d for d in after[row] if d in first] for ident, row in first.items()}
    problems: list[tuple[int, int, str]] = []
    edges: set[tuple[str | None, str]] = set()
    for cycle in find_cycles(graph):
        start = min(range(len(cycle) - 1), key=lambda i: first[cycle[i]])
        ordered = cycle[start:-1] + cycle[:start] + [cycle[start]]
        edges.update(zip(ordered, ordered[1:], strict=False))
        chain = ", which runs after ".join(ordered[1:]) if len(ordered) > 2 else "itself"
        row = first[ordered[0]]
        entry = list(after[row]).index(ordered[1])
        message = f"dependency cycle: {ordered[0]} runs after {chain}; "
        problems.append((row, entry, message + "remove one of these after: entries"))
    return problems, edges


def find_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Distinct cycles of a dependency graph (id -> ids it follows), as [a, b, ..., a]."""
    found: dict[frozenset[str], list[str]] = {}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt]
                found.setdefault(frozenset(cycle), cycle)
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    return list(found.values())


def build_plan(runbook: Runbook, *, anchors: Mapping[str, datetime] | None = None) -> Plan:
    """Place every step of a loaded runbook in time and order."""
    tz = pendulum.timezone(runbook.timezone)
    resolved = _anchors(runbook, anchors or {}, tz)
    pairs = runbook.steps()
    fixed = {s.id: resolve(s.at, resolved).in_timezone(tz) if s.at else None for _, s in pairs}
    start = _start(runbook, fixed, resolved)
    rows = [(s.id, s.after, fixed[s.id]) for _, s in pairs]
    times = earliest_times(rows, start=start, chain=True)
    _check_order(rows, times)
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
        missing = ", ".join(unknown)
        raise PlanError(
            f"runbook {runbook.name} has no anchor {missing}; declared anchors: {declared}"
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


def _check_order(rows: Sequence[Row], times: Mapping[str, DateTime | None]) -> None:
    # The loader checks this with the runbook's own anchors; overrides can
    # still move an anchored step before an absolute one it follows.
    for i, dep, at, before in order_conflicts(rows, times):
        raise PlanError(
            f"step {rows[i][0]} at {show(at)} would run before {dep} ({show(before)}), "
            "which it follows; check the anchor overrides"
        )
