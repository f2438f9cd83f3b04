"""What the CLI prints while a run goes on and when it ends (the only printing module
besides the CLI itself): one line per step from the ledger, and the final timeline."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cutover.ledger import Event, Ledger


def watch(ledger: Ledger, execution_id: str, stop: threading.Event) -> None:
    """Print one line per finished step, decision or rollback, as the ledger records them."""
    seen = 0
    flow_run_id = ledger.execution(execution_id).flow_run_id
    while True:
        finished = stop.wait(0.3)
        current = ledger.execution(execution_id).flow_run_id
        if current and current != flow_run_id:
            flow_run_id = current
            print(f"  watch it in the Prefect UI: {_ui()}/runs/flow-run/{current}", flush=True)
        for event in ledger.events(execution_id)[seen:]:
            seen += 1
            line = event_line(event, execution_id)
            if line:
                print(line, flush=True)
        if finished:
            return


def event_line(event: Event, execution_id: str) -> str | None:
    kind, data, step = event.kind, event.data, event.step_id
    at = event.clock_at[:16].replace("T", " ")
    if kind == "step-completed":
        return f"  {at}  {'ok':6} {step}" + (
            "  (overridden by a person)" if data.get("overridden") else ""
        )
    if kind == "step-failed":
        return f"  {at}  {'FAILED':6} {step}: {data.get('reason')} -> {data.get('policy')}"
    if kind == "approval-requested":
        line = f"  {at}  {'ASK':6} {step}: {data.get('question')}"
        if not data.get("waits_for_a_person"):
            return line
        pad = " " * 27
        return (
            f"{line}\n{pad}answer in the Prefect UI: {_ui()}/runs/flow-run/"
            f"{data.get('flow_run_id')}\n{pad}or: cutover approve {execution_id} "
            f"--step {step} --by NAME --decision go|no-go"
        )
    if kind == "decision":
        auto = " (automatic)" if data.get("automatic") else ""
        return f"  {at}  {'DECIDE':6} {step}: {data.get('decision')} by {data.get('by')}{auto}"
    if kind == "rollback-started":
        trigger, runbook = data.get("trigger_step"), data.get("runbook")
        return f"  {at}  {'ROLLBACK':6} triggered by {trigger}: running {runbook}"
    return None


def print_outcome(ledger: Ledger, execution_id: str, status: str) -> None:
    from cutover.report import timeline_rows

    execution = ledger.execution(execution_id)
    rows = timeline_rows(ledger, execution_id)
    print()
    print(
        table(
            rows,
            ["runbook", "phase", "step", "planned", "finished", "outcome", "gates", "decision"],
        )
    )
    print()
    print(f"execution {execution_id}: {status}")
    print(f"ledger: {ledger.url}")
    print(f"report: {Path(execution.workdir) / 'report.md'}")


def table(rows: list[dict[str, str]], columns: list[str]) -> str:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = [
        "  ".join(c.ljust(widths[c]) for c in columns),
        "  ".join("-" * widths[c] for c in columns),
    ]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _ui() -> str:
    return os.environ.get("PREFECT_API_URL", "").removesuffix("/").removesuffix("/api")
