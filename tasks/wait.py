"""The `wait` action: let time pass on the run's clock (a soak period, a cooling-off)."""

from __future__ import annotations

from pydantic import Field

from cutover.steps import Evidence, StepContext, action
from cutover.types import Duration, Params


class Wait(Params):
    duration: Duration = Field(description="How long to wait, e.g. 15m or 2h")


@action("wait")
def wait(params: Wait, ctx: StepContext) -> Evidence:
    """Wait on the run's clock: real time in a run, virtual time in a rehearsal."""
    began = ctx.clock.now()
    ctx.clock.sleep(params.duration.total_seconds())
    return {"from": began.isoformat(), "until": ctx.clock.now().isoformat()}
