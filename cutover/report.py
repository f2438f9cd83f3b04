"""The record of an execution as people read it: a timeline and a report to sign.

Both are derived from the ledger alone, so they can be rebuilt at any time
(`cutover report EXECUTION`) and always agree with the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cutover.ledger import Event, Ledger


@dataclass
class StepLine:
    runbook: str
    phase: str
    step: str
    title: str = ""
    owner: str = ""
    planned: str = ""
    started: str = ""
    finished: str = ""
    outcome: str = "started"
    gates_passed: int = 0
    gates_failed: int = 0
    decisions: list[str] = field(default_factory=list)
    reason: str = ""


def _short(clock_at: str) -> str:
    # "2023-11-20T18:00:00+08:00" -> "2023-11-20 18:00"
    return clock_at[:16].replace("T", " ") if clock_at else ""


def step_lines(events: list[Event]) -> list[StepLine]:
    lines: dict[tuple[str, str], StepLine] = {}
    for event in events:
        if not event.step_id:
            continue
        line = lines.setdefault(
            (event.runbook, event.step_id),
            StepLine(event.runbook, event.phase_id or "", event.step_id),
        )
        data = event.data
        if event.kind == "step-started":
            line.title, line.owner = data.get("title", ""), data.get("owner", "")
            line.planned = _short(data.get("planned_at", ""))
            line.started = line.started or _short(event.clock_at)
            line.outcome = "running"
        elif event.kind in ("gate-passed", "gate-failed"):
            if event.kind == "gate-passed":
                line.gates_passed += 1
            else:
                line.gates_failed += 1
        elif event.kind == "decision":
            auto = " (automatic)" if data.get("automatic") else ""
            line.decisions.append(f"{data.get('decision')} by {data.get('by')}{auto}")
        elif event.kind == "step-completed":
            line.finished = _short(event.clock_at)
            line.outcome = "overridden" if data.get("overridden") else "completed"
        elif event.kind == "step-failed":
            line.finished = _short(event.clock_at)
            line.outcome, line.reason = "failed", data.get("reason", "")
    return list(lines.values())


def timeline_rows(ledger: Ledger, execution_id: str) -> list[dict[str, str]]:
    """One row per step that ran, in the order it ran: the `timeline` artifact."""
    return [
        {
            "runbook": s.runbook,
            "phase": s.phase,
            "step": s.step,
            "owner": s.owner,
            "planned": s.planned,
            "finished": s.finished,
            "outcome": s.outcome,
            "gates": f"{s.gates_passed} passed"
            + (f", {s.gates_failed} failed" if s.gates_failed else ""),
            "decision": "; ".join(s.decisions),
            "reason": s.reason[:200],
        }
        for s in step_lines(ledger.events(execution_id))
    ]


def render_report(ledger: Ledger, execution_id: str) -> str:
    execution = ledger.execution(execution_id)
    events = ledger.events(execution_id)
    intact, head = ledger.verify_chain(execution_id)
    lines = step_lines(events)
    out = [
        f"# Cutover report: {execution.runbook}",
        "",
        f"- Execution: `{execution.id}` ({execution.mode}) on profile `{execution.profile}`",
        f"- Status: **{execution.status}**",
        f"- Started (wall clock, UTC): {execution.started_at:%Y-%m-%d %H:%M:%S}",
        f"- Ledger: {len(events)} records; hash chain "
        + (f"intact, head `{head}`" if intact else f"BROKEN: {head}"),
        "",
        "## Timeline",
        "",
        "| runbook | phase | step | owner | planned | finished | outcome | gates | decision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in lines:
        gates = f"{s.gates_passed}/{s.gates_passed + s.gates_failed}"
        out.append(
            f"| {s.runbook} | {s.phase} | {s.step} | {s.owner} | {s.planned} | "
            f"{s.finished} | {s.outcome} | {gates} | {'; '.join(s.decisions)} |"
        )
    failures = [s for s in lines if s.outcome == "failed"]
    if failures:
        out += ["", "## Failures", ""]
        out += [f"- `{s.step}` ({s.runbook}): {s.reason}" for s in failures]
    rollback = [e for e in events if e.kind == "rollback-started"]
    if rollback:
        data = rollback[0].data
        out += [
            "",
            "## Rollback",
            "",
            f"Started at {_short(rollback[0].clock_at)} by step `{data.get('trigger_step')}`: "
            f"{data.get('reason')}. Rollback runbook: `{data.get('runbook')}`.",
        ]
    out += evidence_section(events)
    out += [
        "",
        "## Sign-off",
        "",
        "We have reviewed this record and the evidence in the ledger.",
        "",
        "| role | name | signature | date |",
        "|---|---|---|---|",
        "| Cutover lead | | | |",
        "| Operations | | | |",
        "| Business owner | | | |",
        "",
    ]
    return "\n".join(out)


def write_report(ledger: Ledger, execution_id: str, workdir: Path) -> Path:
    """Write `report.md` into the execution's work directory (temp name, then rename)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(render_report(ledger, execution_id), encoding="utf-8")
    tmp.replace(path)
    return path


_MARKS = {"gate-passed": "passed", "gate-failed": "FAILED"}


def evidence_section(events: list[Event]) -> list[str]:
    """Per step: every gate's verdict and any reconciliation table, as markdown."""
    out = ["", "## Evidence", ""]
    current = None
    for event in events:
        if event.kind not in _MARKS and not (event.kind == "action-done" and _table(event)):
            continue
        if (event.runbook, event.step_id) != current:
            current = (event.runbook, event.step_id)
            out += ["", f"**{event.step_id}** ({event.runbook}, {_short(event.clock_at)})", ""]
        if event.kind in _MARKS:
            out.append(f"- {_MARKS[event.kind]}: {event.data.get('summary', '')}")
        table = _table(event)
        if table:
            out += ["", *_markdown_table(table), ""]
    return out


def _table(event: Event) -> list[dict] | None:
    holder = event.data.get("evidence" if event.kind == "action-done" else "observed")
    table = holder.get("table") if isinstance(holder, dict) else None
    return table if isinstance(table, list) and table else None


def _markdown_table(rows: list[dict]) -> list[str]:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines
