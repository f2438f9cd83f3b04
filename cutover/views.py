"""Views of a plan: a fixed-width table for people, a JSON document for programs.

Both return values; printing is the CLI's business. The JSON keys are
documented in docs/runbook-format.md ("The plan as JSON") and only ever grow.
"""

from __future__ import annotations

from typing import Any

from cutover.plan import Plan, PlannedStep
from cutover.runbook import Gate, OnFailure
from cutover.times import show
from cutover.types import format_duration

PLAN_JSON_VERSION = 1
_COLUMNS = ("#", "when", "phase", "step", "owner", "gates", "on failure")
_WIDTHS = {"step": 60, "gates": 40}  # longer cells are cut, so rows stay on one line


def plan_table(plan: Plan) -> str:
    """The plan as a readable table, one row per step in execution order."""
    runbook = plan.runbook
    rows = [_row(planned, runbook.rollback) for planned in plan.steps]
    widths = [max(len(col), *(len(row[i]) for row in rows)) for i, col in enumerate(_COLUMNS)]
    lines = [f"{runbook.name}: {runbook.title}", f"time zone {runbook.timezone}"]
    if plan.anchors:
        anchors = ", ".join(f"{name} = {show(at)}" for name, at in sorted(plan.anchors.items()))
        lines.append(f"anchors: {anchors}")
    lines.append("")
    lines.append(_line(_COLUMNS, widths))
    lines.append(_line(tuple("-" * w for w in widths), widths))
    lines.extend(_line(row, widths) for row in rows)
    if any(not planned.timed for planned in plan.steps):
        lines.append("")
        lines.append("~ not timed: starts as soon as the steps it follows are done")
    return "\n".join(lines)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    padded = [
        cell.rjust(w) if i == 0 else cell.ljust(w)
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(padded).rstrip()


def _row(planned: PlannedStep, default_rollback: str | None) -> tuple[str, ...]:
    step = planned.step
    when = show(planned.at, step.at.text if step.at else None)
    return (
        str(planned.index + 1),
        ("  " if planned.timed else "~ ") + when,
        planned.phase.id,
        _cut(f"{step.id}  {step.title}", _WIDTHS["step"]),
        step.owner,
        _cut(", ".join(_gate(g) for g in step.gates) or "-", _WIDTHS["gates"]),
        _policy(step.on_failure, default_rollback),
    )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _gate(gate: Gate) -> str:
    target = getattr(gate.params, "target", None)
    return f"{gate.check}({target})" if isinstance(target, str) else gate.check


def _policy(on_failure: OnFailure, default_rollback: str | None) -> str:
    """halt | ask | rollback -> file | retry 3x/5m then rollback -> file."""
    policy = on_failure.policy
    if policy == "retry":
        every = format_duration(on_failure.delay)
        text = f"retry {on_failure.attempts}x/{every} then {on_failure.then}"
    else:
        text = policy
    rolls_back = "rollback" in (policy, on_failure.then if policy == "retry" else None)
    if rolls_back and (on_failure.runbook or default_rollback):
        text += f" -> {on_failure.runbook or default_rollback}"
    return text


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data with stable keys (see docs/runbook-format.md)."""
    runbook = plan.runbook
    return {
        "version": PLAN_JSON_VERSION,
        "runbook": {
            "name": runbook.name,
            "title": runbook.title,
            "timezone": runbook.timezone,
            "source": runbook.source,
            "rollback": runbook.rollback,
        },
        "anchors": {name: at.isoformat() for name, at in sorted(plan.anchors.items())},
        "start": plan.start.isoformat() if plan.steps else None,
        "end": plan.end.isoformat() if plan.steps else None,
        "phases": [
            {"id": p.id, "title": p.title, "steps": [s.id for s in p.steps]} for p in runbook.phases
        ],
        "steps": [_step_json(planned) for planned in plan.steps],
    }


def _step_json(planned: PlannedStep) -> dict[str, Any]:
    step = planned.step
    action = step.action
    return {
        "index": planned.index,
        "phase": planned.phase.id,
        "id": step.id,
        "title": step.title,
        "owner": step.owner,
        "at": planned.at.isoformat(),
        "at_text": step.at.text if step.at else None,
        "timed": planned.timed,
        "after": list(step.after),
        "action": None
        if action is None
        else {"type": action.type, "params": _params(action.params)},
        "gates": [
            {"check": g.check, "title": g.title, "params": _params(g.params)} for g in step.gates
        ],
        "on_failure": step.on_failure.model_dump(mode="json"),
        "notes": step.notes,
        "line": step.line,
    }


def _params(params: Any) -> dict[str, Any]:
    return params.model_dump(mode="json", by_alias=True)
