"""Answering a go/no-go from outside the run: find the paused flow run, resume it with input."""

from __future__ import annotations

from uuid import UUID

from cutover.errors import ApprovalError, LedgerError
from cutover.ledger import Ledger


def resolve_execution(ledger: Ledger, run_id: str) -> str:
    """An execution id, from itself or from the id of its Prefect flow run or phase subflow run."""
    try:
        return ledger.execution(run_id).id
    except LedgerError:
        pass
    for execution in reversed(ledger.executions()):
        if execution.flow_run_id == run_id:
            return execution.id
        if any(
            e.kind == "approval-requested" and e.data.get("flow_run_id") == run_id
            for e in ledger.events(execution.id)
        ):
            return execution.id
    raise ApprovalError(
        f"{run_id!r} is neither an execution nor a Prefect flow run in the "
        f"ledger {ledger.url}; `cutover status` lists the executions"
    )


def pending_question(ledger: Ledger, execution_id: str, step_id: str) -> dict[str, object]:
    """The open question of a step: its last approval-requested event with no decision after it."""
    for waiting, question in open_questions(ledger, execution_id):
        if waiting == step_id:
            return question
    asked = any(
        e.kind == "approval-requested" for e in ledger.events(execution_id, step_id=step_id)
    )
    raise ApprovalError(
        f"step {step_id} of {execution_id} is not waiting for a decision"
        + (" (it was already decided)" if asked else "")
    )


def open_questions(ledger: Ledger, execution_id: str) -> list[tuple[str, dict[str, object]]]:
    """(step id, question) for every go/no-go the execution is waiting for."""
    waiting: dict[str, dict[str, object]] = {}
    for event in ledger.events(execution_id):
        if event.kind == "approval-requested" and event.step_id:
            waiting[event.step_id] = event.data
        elif event.kind == "decision" and event.step_id:
            waiting.pop(event.step_id, None)
    return list(waiting.items())


def approve(
    ledger: Ledger, run_id: str, *, step_id: str, by: str, decision: str, comment: str = ""
) -> tuple[str, str]:
    """Resume the paused flow run with a typed decision; the run records it in the ledger.

    `run_id` is an execution id or a Prefect flow run id; returns (execution id, flow run id).
    """
    from prefect import resume_flow_run
    from prefect.exceptions import FlowPauseTimeout, NotPausedError

    execution_id = resolve_execution(ledger, run_id)
    question = pending_question(ledger, execution_id, step_id)
    flow_run_id = str(question.get("flow_run_id") or "")
    if not flow_run_id:
        raise ApprovalError(f"step {step_id} is waiting, but not in a Prefect flow run")
    try:
        resume_flow_run(
            UUID(flow_run_id), run_input={"decision": decision, "approver": by, "comment": comment}
        )
    except NotPausedError as exc:
        raise ApprovalError(
            f"flow run {flow_run_id} is not paused (the run may have died; "
            "re-run its command to resume)"
        ) from exc
    except FlowPauseTimeout as exc:
        raise ApprovalError(f"the pause of flow run {flow_run_id} has expired") from exc
    except RuntimeError as exc:
        raise ApprovalError(f"the run refused the input: {exc}") from exc
    return execution_id, flow_run_id
