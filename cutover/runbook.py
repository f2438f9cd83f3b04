"""Runbook models: what a reviewed cutover runbook says.

These are the shapes after loading; `cutover.load` builds them from YAML and
checks everything that needs more than one field to decide (ids, dependencies,
times, targets, secrets). `action` and `gates` hold the validated parameter
models of registered step types.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pendulum import DateTime
from pydantic import BaseModel, ConfigDict, Field

from cutover.types import Duration, Params

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class OnFailure(_Model):
    """What happens when the action fails or a gate does not hold.

    halt      stop the run; the ledger keeps everything; a re-run resumes here.
    retry     run the failed part again `attempts` times, `delay` apart, then `then`.
    ask       pause for a human go (carry on) / no-go (halt), decided within
              `decide_within` (30 minutes unless the runbook says otherwise).
    rollback  stop all forward steps and run the rollback runbook.
    """

    policy: Literal["halt", "retry", "ask", "rollback"] = "halt"
    attempts: int = Field(3, ge=1, le=100)
    delay: Duration = timedelta(minutes=1)
    then: Literal["halt", "ask", "rollback"] = "halt"
    # The Qingyuan plan: a fault must get a decided measure within 30 minutes.
    decide_within: Duration = Field(
        timedelta(minutes=30), description="ask: no decision by then means no-go (halt)"
    )
    runbook: str | None = Field(
        None, description="Rollback runbook, relative to this file; default: the runbook's own"
    )


class TimeSpec(_Model):
    """When a step runs: an absolute time, or an offset from a named anchor."""

    text: str  # as written, for messages and the plan view
    absolute: DateTime | None = None
    anchor: str | None = None
    offset: Duration = timedelta(0)


class Action(_Model):
    type: str
    params: Params


class Gate(_Model):
    check: str
    params: Params
    title: str = ""


class Step(_Model):
    id: str = Field(pattern=ID_PATTERN)
    title: str
    owner: str
    at: TimeSpec | None = None
    after: tuple[str, ...] = ()
    action: Action | None = None
    gates: tuple[Gate, ...] = ()
    on_failure: OnFailure = OnFailure()
    notes: str = ""
    line: int = 0  # line of the step in its file, for messages at run time


class Phase(_Model):
    id: str = Field(pattern=ID_PATTERN)
    title: str
    steps: tuple[Step, ...]


class Team(_Model):
    name: str
    contact: str = ""
    escalation: str = ""


class Runbook(_Model):
    name: str = Field(pattern=ID_PATTERN)
    title: str
    timezone: str
    anchors: dict[str, DateTime] = {}
    rollback: str | None = None
    teams: dict[str, Team] = {}
    phases: tuple[Phase, ...]
    source: str = ""  # the file it was loaded from

    def steps(self) -> list[tuple[Phase, Step]]:
        return [(phase, step) for phase in self.phases for step in phase.steps]
