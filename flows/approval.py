"""Go/no-go through Prefect: pause the flow run for typed input.

The open-source Prefect server knows no users, so the form asks who decides and
we record that name. Our own deadline comes before Prefect's pause timeout: a
timer resumes the run with the runbook's `on_timeout` decision, because a pause
that times out in Prefect fails the run beyond repair (see PREFECT.md §1).
"""

from __future__ import annotations

import contextvars
import threading
from typing import Literal
from uuid import UUID

from prefect import pause_flow_run, resume_flow_run
from prefect.context import FlowRunContext
from prefect.exceptions import NotPausedError
from prefect.input import RunInput
from pydantic import Field

from cutover.decisions import Decision, Question

# Extra time Prefect's own pause timeout gets beyond our deadline.
PAUSE_MARGIN_SECONDS = 600


class GoNoGo(RunInput):
    decision: Literal["go", "no-go"] = Field(description="go: carry on; no-go: stop here")
    approver: str = Field(min_length=1, description="Your name (recorded in the ledger)")
    comment: str = Field("", description="Why (recorded in the ledger)")


class PrefectApprover:
    """Pauses the current flow run until someone answers in the UI or with `cutover approve`."""

    def __init__(self, *, poll_interval: float = 2.0) -> None:
        self._poll_interval = poll_interval

    def decide(self, question: Question) -> Decision:
        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            raise RuntimeError("a go/no-go can only be asked inside a Prefect flow run")
        flow_run_id = context.flow_run.id
        form = GoNoGo.with_initial_data(
            description=_markdown(question), decision="no-go", approver="", comment=""
        )
        # The timer thread must talk to the same Prefect API as this run: copy the
        # context, since Prefect's settings live in context variables.
        timer = threading.Timer(question.timeout.total_seconds(), contextvars.copy_context().run,
                                args=(_answer_for_nobody, flow_run_id, question))
        timer.daemon = True
        timer.start()
        try:
            answer = pause_flow_run(
                wait_for_input=form,
                key=f"go-no-go-{question.step_id}",
                timeout=int(question.timeout.total_seconds()) + PAUSE_MARGIN_SECONDS,
                poll_interval=self._poll_interval,
            )
        finally:
            timer.cancel()
        automatic = answer.approver.startswith("cutover (")
        return Decision(
            answer.decision, by=answer.approver, comment=answer.comment, automatic=automatic
        )


def _answer_for_nobody(flow_run_id: UUID, question: Question) -> None:
    hours = question.timeout.total_seconds() / 3600
    try:
        resume_flow_run(
            flow_run_id,
            run_input={
                "decision": question.on_timeout,
                "approver": f"cutover (no answer within {hours:g} h)",
                "comment": f"deadline passed; the runbook says {question.on_timeout}",
            },
        )
    except NotPausedError:
        pass  # answered at the last moment


def _markdown(question: Question) -> str:
    approvers = ", ".join(question.approvers) or "the release engineer"
    return (
        f"### Go / no-go: `{question.step_id}`\n\n{question.text}\n\n"
        f"**Who decides:** {approvers}  \n"
        f"**No answer within {question.timeout}:** {question.on_timeout}\n\n"
        "Or from a terminal: `cutover approve EXECUTION --step "
        f"{question.step_id} --by NAME --decision go|no-go`"
    )


def current_flow_run() -> dict[str, str]:
    """Where a paused question can be answered: the flow run that asks it."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return {}
    return {"flow_run_id": str(context.flow_run.id), "flow_run_name": context.flow_run.name}
