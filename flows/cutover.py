"""The cutover flow: one Prefect flow run per execution, a subflow per phase, a task per step.

Everything a flow needs is reopened from the ledger by (ledger URL, execution id),
so the flow's parameters are two strings: a scheduled deployment, a resumed run
and a phase subflow all start the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Failed
from prefect.utilities.annotations import quote

from cutover.decisions import Approver, AutoApprover
from cutover.engine import (
    Script,
    Session,
    StepResult,
    ask_after_failure,
    execute_step,
    progress,
    wait_for,
)
from cutover.execution import open_session, rollback_script
from cutover.ledger import Execution, Ledger
from cutover.plan import PlannedStep
from cutover.report import timeline_rows, write_report
from cutover.views import plan_table
from flows.approval import PrefectApprover, current_flow_run
from flows.retire import retire_flow_run


def _approver(execution: Execution) -> Approver:
    if execution.mode == "rehearse" and execution.options.get("auto_approve"):
        return AutoApprover()
    return PrefectApprover(poll_interval=float(execution.options.get("poll_interval", 2.0)))


@contextmanager
def _opened(ledger_url: str, execution_id: str, role: str) -> Iterator[tuple[Session, Script]]:
    """The session and script of an execution, reopened from the ledger, closed afterwards."""
    ledger = Ledger(ledger_url)
    try:
        session, main = open_session(ledger, execution_id, _approver)
        session.locator = current_flow_run
        if role == "main":
            yield session, main
        else:
            runbook_ref = ledger.facts(execution_id).get("rollback-runbook")
            yield session, rollback_script(session, main, runbook_ref)
    finally:
        ledger.close()


@task(name="step", cache_policy=NO_CACHE, persist_result=False)
def run_step(session: Session, script: Script, step: PlannedStep) -> StepResult | State:
    """One runbook step: action, gates, retries; the ledger records every part.

    A failed step ends the task run Failed (red in the UI) with the reason as its
    message; the StepResult rides along as the state's data for the phase to act on.
    """
    result = execute_step(session, script, step)
    for index, table in enumerate(_evidence_tables(session, script, step)):
        create_table_artifact(
            table,
            key=f"reconcile-{step.step.id}-{index}"[:60].rstrip("-"),
            description=f"{step.step.id}: {step.step.title}",
        )
    if result.outcome == "failed":
        return Failed(message=f"{result.reason} (then: {result.policy})", data=result)
    get_run_logger().info("%s %s", step.step.id, result.outcome)
    return result


# Where a step's events carry a reconciliation table, by event kind.
_TABLE_HOLDERS = {"action-done": "evidence", "gate-passed": "observed", "gate-failed": "observed"}


def _evidence_tables(session: Session, script: Script, step: PlannedStep) -> list[list[dict]]:
    """Reconciliation tables a step's action or gates produced, to show as artifacts."""
    tables = []
    for event in session.ledger.events(
        session.execution_id, runbook=script.name, step_id=step.step.id
    ):
        holder = event.data.get(_TABLE_HOLDERS.get(event.kind, ""))
        if isinstance(holder, dict) and isinstance(holder.get("table"), list) and holder["table"]:
            tables.append(holder["table"])
    return tables


@flow(name="phase", flow_run_name="{role}-{phase_id}", persist_result=False)
def run_phase(
    ledger_url: str, execution_id: str, role: str, phase_id: str, progress_id: str | None = None
) -> dict[str, Any] | State:
    """Run the steps of one phase in time order; stop at the first failure the policy won't pass."""
    with _opened(ledger_url, execution_id, role) as (session, script):
        return _run_steps(session, script, phase_id, progress_id)


def _run_steps(
    session: Session, script: Script, phase_id: str, progress_id: str | None
) -> dict[str, Any] | State:
    done_kinds = session.ledger.step_kinds(session.execution_id, script.name)
    for step in script.plan.steps:
        if step.phase.id != phase_id:
            continue
        if "step-completed" in done_kinds.get(step.step.id, ()):
            continue  # done in an earlier run: not even a task, so nothing can repeat
        wait_for(session, step)
        name = f"{step.at.format('MM-DD HH:mm')} {step.step.id}"
        state = run_step.with_options(task_run_name=name)(
            quote(session), quote(script), quote(step), return_state=True
        )
        result = state.result(raise_on_failure=False)
        if not isinstance(result, StepResult):  # the task itself broke: that is a failure too
            result = StepResult(step.step.id, "failed", f"step task crashed: {result}")
        session.save_clock()  # retries moved the clock on; the next phase starts from here
        if progress_id:
            done, total = progress(session, script)
            update_progress_artifact(progress_id, 100.0 * done / total)
        if result.outcome != "failed":
            continue
        if result.policy == "ask" and ask_after_failure(session, script, step, result).go:
            continue
        outcome = {"status": "halted", "step": step.step.id, "reason": result.reason}
        if result.policy == "rollback":
            outcome |= {"status": "rollback", "runbook": result.rollback_runbook}
        name = "RollingBack" if result.policy == "rollback" else "Halted"
        return Failed(name=name, message=f"{step.step.id}: {result.reason}", data=outcome)
    return {"status": "completed"}


@flow(name="cutover", flow_run_name="{execution_id}", persist_result=False)
def cutover(ledger_url: str, execution_id: str) -> str | State:
    """Run (or resume) one execution of a runbook; returns its final status."""
    with _opened(ledger_url, execution_id, "main") as (session, main):
        _take_over(session)
        progress_id = _announce(main)
        rollback_ref = session.ledger.facts(execution_id).get("rollback-runbook")
    outcome: dict[str, Any] = {"status": "completed"}
    if rollback_ref is None:
        outcome = _run_script(ledger_url, execution_id, "main", main, progress_id)
        if outcome["status"] == "rollback":
            with _opened(ledger_url, execution_id, "main") as (session, main):
                rollback_ref = _start_rollback(session, main, outcome)
    if rollback_ref is not None:
        with _opened(ledger_url, execution_id, "rollback") as (_, rollback):
            back = _run_script(ledger_url, execution_id, "rollback", rollback, progress_id)
        status = "rolled-back" if back["status"] == "completed" else "rollback-failed"
        outcome = {**outcome, "status": status, "rollback": back}
    # Reopen: the phase subflows moved the clock on.
    with _opened(ledger_url, execution_id, "main") as (session, main):
        _finish(session, main, outcome)
    status = outcome["status"]
    get_run_logger().info("execution %s: %s", execution_id, status)
    if status == "completed":
        return status
    # Anything but completed shows red in the UI, named for what happened.
    names = {"halted": "Halted", "rolled-back": "RolledBack", "rollback-failed": "RollbackFailed"}
    where = f" at {outcome['step']}: {outcome['reason']}" if outcome.get("step") else ""
    return Failed(name=names.get(status, "Failed"), message=f"{status}{where}", data=status)


def _take_over(session: Session) -> None:
    """Claim the execution for this flow run, retiring the runs of a killed process."""
    ledger, execution_id = session.ledger, session.execution_id
    previous = ledger.execution(execution_id).flow_run_id
    current = current_flow_run()
    if previous and current and previous != current["flow_run_id"]:
        for run_id in retire_flow_run(previous, current["flow_run_id"]):
            get_run_logger().info(
                "marked flow run %s Crashed: this run resumes its execution", run_id
            )
    ledger.update_execution(
        execution_id,
        status="running",
        **({"flow_run_id": current["flow_run_id"]} if current else {}),
    )


def _announce(main: Script) -> str:
    """The plan and a progress bar, shown in the UI from the start; returns the bar's id."""
    create_markdown_artifact(
        f"```\n{plan_table(main.plan)}\n```",
        key="plan",
        description=f"The plan of {main.runbook.name}, times in {main.runbook.timezone}",
    )
    return str(
        create_progress_artifact(
            0.0, key="progress", description=f"{main.runbook.title}: steps done"
        )
    )


def _finish(session: Session, main: Script, outcome: dict[str, Any]) -> None:
    status = outcome["status"]
    session.record(main, f"execution-{status}", data=outcome)
    _publish(session, main)
    ended = {} if status == "halted" else {"ended_at": datetime.now(UTC)}
    session.ledger.update_execution(
        session.execution_id, status=status, clock_now=session.clock_text(), **ended
    )


def _run_script(
    ledger_url: str, execution_id: str, role: str, script: Script, progress_id: str
) -> dict[str, Any]:
    for phase in script.runbook.phases:
        state = run_phase(ledger_url, execution_id, role, phase.id, progress_id, return_state=True)
        outcome = state.result(raise_on_failure=False)
        if not isinstance(outcome, dict):  # the phase flow itself broke
            return {"status": "halted", "step": None, "reason": f"phase {phase.id}: {outcome}"}
        if outcome["status"] != "completed":
            return outcome
    return {"status": "completed"}


def _start_rollback(session: Session, main: Script, outcome: dict[str, Any]) -> str:
    runbook_ref = outcome.get("runbook")
    if not runbook_ref:
        raise RuntimeError(f"step {outcome['step']} asks for a rollback but names no runbook")
    session.record(
        main,
        "rollback-started",
        data={"trigger_step": outcome["step"], "reason": outcome["reason"], "runbook": runbook_ref},
    )
    session.ledger.facts(session.execution_id).put("rollback-runbook", runbook_ref)
    return runbook_ref


def _publish(session: Session, main: Script) -> None:
    rows = timeline_rows(session.ledger, session.execution_id)
    if rows:
        create_table_artifact(
            rows, key="timeline", description=f"{main.runbook.title} ({main.runbook.timezone})"
        )
    report = write_report(session.ledger, session.execution_id, session.workdir)
    create_markdown_artifact(
        report.read_text(encoding="utf-8"),
        key="cutover-report",
        description="Cutover report for sign-off",
    )
