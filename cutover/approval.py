"""The `approval` step type: a human go/no-go, asked through the run's approver.

In a real run the approver pauses the Prefect flow run for typed input (resumed
from the UI or `cutover approve`); in a rehearsal with `--auto-approve` it says
go and the ledger records the decision as automatic.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from cutover.decisions import Question
from cutover.errors import StepError
from cutover.steps import Evidence, StepContext, action
from cutover.types import Duration, Params


class Approval(Params):
    question: str = Field(description="What the approvers decide, shown in the UI form")
    approvers: list[str] = Field(
        default_factory=list, description="Who may decide (teams or roles), shown in the form"
    )
    timeout: Duration = Field(
        timedelta(hours=4), description="No answer by then means `on_timeout`"
    )
    on_timeout: Literal["go", "no-go"] = Field("no-go", description="Decision when nobody answers")


@action("approval")
def approval(params: Approval, ctx: StepContext) -> Evidence:
    """Ask for a go/no-go; a no-go fails the step (and its on-failure policy applies)."""
    if ctx.approver is None:
        raise StepError("no approver is configured for this run", step_id=ctx.step_id)
    decision = ctx.approver.decide(
        Question(
            step_id=ctx.step_id,
            text=params.question,
            approvers=tuple(params.approvers),
            timeout=params.timeout,
            on_timeout=params.on_timeout,
        )
    )
    evidence = decision.as_evidence()
    if not decision.go:
        raise StepError(
            f"no-go by {decision.by}: {decision.comment or 'no comment'}",
            step_id=ctx.step_id,
            evidence=evidence,
        )
    return evidence
