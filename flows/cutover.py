"""The cutover flow: one Prefect flow run per execution, a subflow per phase, a task per step.

Everything a flow needs is reopened from the ledger by (ledger URL, execution id),
so the flow's parameters are two strings: a scheduled deployment, a resumed run
and a phase subflow all start the same way.
"""

from __future__ import annotations

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


def _open(ledger_url: str, execution_id: str, role: str) -> tuple[Session, Script]:
    ledger = Ledger(ledger_url)
    session, main = open_session(ledger, execution_id, _approver)
    session.locator = current_flow_run
    if role == "main":
        return session, main
    runbook_ref = session.ledger.facts(execution_id).get("rollback-runbook")
    return session, rollback_script(session, main, runbook_ref)


@task(name="step", cache_policy=NO_CACHE, persist_result=False)
def run_step(session: Session, script: Script, step: PlannedStep) -> StepResult:
    """One runbook step: action, gates, retries; the ledger records every part."""
    result = execute_step(session, script, step)
    logger = get_run_logger()
    if result.outcome == "failed":
        logger.error("%s failed: %s (policy: %s)", step.step.id, result.reason, result.policy)
    else:
        logger.info("%s %s", step.step.id, result.outcome)
    for index, table in enumerate(_evidence_tables(session, script, step)):
        create_table_artifact(
            table,
            key=f"reconcile-{step.step.id}-{index}"[:60].rstrip("-"),
            description=f"{step.step.id}: {step.step.title}",
        )
    return result


def _evidence_tables(session: Session, script: Script, step: PlannedStep) -> list[list[dict]]:
    """Reconciliation tables a step's action or gates produced, to show as artifacts."""
    tables = []
    for event in session.ledger.events(
        session.execution_id, runbook=script.name, step_id=step.step.id
    ):
        holder = (
            event.data.get("evidence")
            if event.kind == "action-done"
            else event.data.get("observed")
            if event.kind.startswith("gate-")
            else None
        )
        if isinstance(holder, dict) and isinstance(holder.get("table"), list) and holder["table"]:
            tables.append(holder["table"])
    return tables


@flow(name="phase", flow_run_name="{role}-{phase_id}", persist_result=False)
def run_phase(
    ledger_url: str, execution_id: str, role: str, phase_id: str, progress_id: str | None = None
) -> dict[str, Any]:
    """Run the steps of one phase in time order; stop at the first failure the policy won't pass."""
    session, script = _open(ledger_url, execution_id, role)
    done_kinds = session.ledger.step_kinds(execution_id, script.name)
    for step in script.plan.steps:
        if step.phase.id != phase_id:
            continue
        if "step-completed" in done_kinds.get(step.step.id, ()):
            continue  # done in an earlier run: not even a task, so nothing can repeat
        wait_for(session, step)
        name = f"{step.at.format('MM-DD HH:mm')} {step.step.id}"
        result = run_step.with_options(task_run_name=name)(
            quote(session), quote(script), quote(step)
        )
        session.save_clock()  # retries moved the clock on; the next phase starts from here
        if progress_id:
            done, total = progress(session, script)
            update_progress_artifact(progress_id, 100.0 * done / total)
        if result.outcome != "failed":
            continue
        if result.policy == "ask" and ask_after_failure(session, script, step, result).go:
            continue
        if result.policy == "rollback":
            return {
                "status": "rollback",
                "step": step.step.id,
                "reason": result.reason,
                "runbook": result.rollback_runbook,
            }
        return {"status": "halted", "step": step.step.id, "reason": result.reason}
    return {"status": "completed"}


@flow(name="cutover", flow_run_name="{execution_id}", persist_result=False)
def cutover(ledger_url: str, execution_id: str) -> str:
    """Run (or resume) one execution of a runbook; returns its final status."""
    logger = get_run_logger()
    session, main = _open(ledger_url, execution_id, "main")
    ledger = session.ledger
    previous = ledger.execution(execution_id).flow_run_id
    current = _flow_run_fields()
    if previous and current and previous != current["flow_run_id"]:
        for run_id in retire_flow_run(previous, current["flow_run_id"]):
            logger.info("marked flow run %s Crashed: this run resumes its execution", run_id)
    ledger.update_execution(execution_id, status="running", **current)
    facts = ledger.facts(execution_id)
    progress_id = str(
        create_progress_artifact(
            0.0, key="progress", description=f"{main.runbook.title}: steps done"
        )
    )
    create_markdown_artifact(
        f"```\n{plan_table(main.plan)}\n```",
        key="plan",
        description=f"The plan of {main.runbook.name}, times in {main.runbook.timezone}",
    )
    outcome: dict[str, Any] = {"status": "completed"}
    if facts.get("rollback-runbook") is None:
        outcome = _run_script(ledger_url, execution_id, "main", main, progress_id)
        if outcome["status"] == "rollback":
            _start_rollback(session, main, outcome)
    if facts.get("rollback-runbook") is not None:
        session, rollback = _open(ledger_url, execution_id, "rollback")
        back = _run_script(ledger_url, execution_id, "rollback", rollback, progress_id)
        outcome = {
            **outcome,
            "status": "rolled-back" if back["status"] == "completed" else "rollback-failed",
            "rollback": back,
        }
    status = outcome["status"]
    session, main = _open(ledger_url, execution_id, "main")  # the subflows moved the clock on
    session.record(main, f"execution-{status}", data=outcome)
    _publish(session, main)
    ledger.update_execution(
        execution_id,
        status=status,
        clock_now=session.clock_text(),
        **({"ended_at": _now()} if status != "halted" else {}),
    )
    logger.info("execution %s: %s", execution_id, status)
    return status


def _run_script(
    ledger_url: str, execution_id: str, role: str, script: Script, progress_id: str
) -> dict[str, Any]:
    for phase in script.runbook.phases:
        outcome = run_phase(ledger_url, execution_id, role, phase.id, progress_id)
        if outcome["status"] != "completed":
            return outcome
    return {"status": "completed"}


def _start_rollback(session: Session, main: Script, outcome: dict[str, Any]) -> None:
    runbook_ref = outcome.get("runbook")
    if not runbook_ref:
        raise RuntimeError(f"step {outcome['step']} asks for a rollback but names no runbook")
    session.record(
        main,
        "rollback-started",
        data={"trigger_step": outcome["step"], "reason": outcome["reason"], "runbook": runbook_ref},
    )
    session.ledger.facts(session.execution_id).put("rollback-runbook", runbook_ref)


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


def _flow_run_fields() -> dict[str, str]:
    located = current_flow_run()
    return {"flow_run_id": located["flow_run_id"]} if located else {}


def _now() -> datetime:
    return datetime.now(UTC)
