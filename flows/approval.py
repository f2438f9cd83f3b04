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
from cutover.types import format_duration

# Extra time Prefect's own pause timeout gets beyond our deadline.
PAUSE_MARGIN_SECONDS = 600


class GoNoGo(RunInput):
    # No defaults for decision and approver: a form submitted untouched is refused by
    # the server (the run stays paused) instead of halting the cutover in nobody's name.
    decision: Literal["go", "no-go"] = Field(description="go: carry on; no-go: stop here")
    approver: str = Field(min_length=1, pattern=r"\S", description="Your name, for the ledger")
    comment: str = Field("", description="Why (recorded in the ledger)")


class PrefectApprover:
    """Pauses the current flow run until someone answers in the UI or with `cutover approve`."""

    automatic = False

    def __init__(self, *, poll_interval: float = 2.0) -> None:
        self._poll_interval = poll_interval
        self._asked = 0  # pause keys must be unique within a flow run

    def decide(self, question: Question) -> Decision:
        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            raise RuntimeError("a go/no-go can only be asked inside a Prefect flow run")
        self._asked += 1
        deadline = _Deadline(context.flow_run.id, question)
        deadline.start()
        try:
            answer = pause_flow_run(
                wait_for_input=GoNoGo.with_initial_data(description=_markdown(question)),
                key=f"{question.kind}-{question.step_id}-{self._asked}",
                timeout=int(question.timeout.total_seconds()) + PAUSE_MARGIN_SECONDS,
                poll_interval=self._poll_interval,
            )
        finally:
            deadline.cancel()
        automatic = deadline.answered and answer.approver == deadline.name
        return Decision(
            answer.decision, by=answer.approver.strip(), comment=answer.comment, automatic=automatic
        )


class _Deadline:
    """Answers for nobody when the runbook's time for a decision has run out."""

    def __init__(self, flow_run_id: UUID, question: Question) -> None:
        self._flow_run_id = flow_run_id
        self._question = question
        self.name = f"cutover (no answer within {format_duration(question.timeout)})"
        self.answered = False
        # The timer thread must talk to the same Prefect API as this run: copy the
        # context, since Prefect's settings live in context variables.
        self._timer = threading.Timer(
            question.timeout.total_seconds(), contextvars.copy_context().run, args=(self._answer,)
        )
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def _answer(self) -> None:
        decision = self._question.on_timeout
        self.answered = True  # set first: the paused run may see the answer at once
        try:
            resume_flow_run(
                self._flow_run_id,
                run_input={
                    "decision": decision,
                    "approver": self.name,
                    "comment": f"deadline passed; the runbook says {decision}",
                },
            )
        except NotPausedError:
            self.answered = False  # a person answered at the last moment


def _markdown(question: Question) -> str:
    approvers = ", ".join(question.approvers) or "the release engineer"
    execution = question.execution_id or "EXECUTION"
    return (
        f"### Go / no-go: `{question.step_id}`\n\n{question.text}\n\n"
        f"**Who decides:** {approvers}  \n"
        f"**No answer within {format_duration(question.timeout)}:** {question.on_timeout}\n\n"
        "Or from a terminal: "
        f"`cutover approve {execution} --step {question.step_id} --by NAME --decision go|no-go`"
    )


def current_flow_run() -> dict[str, str]:
    """Where a paused question can be answered: the flow run that asks it."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return {}
    return {"flow_run_id": str(context.flow_run.id), "flow_run_name": context.flow_run.name}
