"""Human decisions: go/no-go at approval steps and after failed gates under `ask`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

DecisionValue = Literal["go", "no-go"]


@dataclass(frozen=True)
class Decision:
    decision: DecisionValue
    by: str
    comment: str = ""
    automatic: bool = False

    @property
    def go(self) -> bool:
        return self.decision == "go"

    def as_evidence(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "by": self.by,
            "comment": self.comment,
            "automatic": self.automatic,
        }


@dataclass(frozen=True)
class Question:
    """What a person is asked, and by when they must answer."""

    step_id: str
    text: str
    approvers: tuple[str, ...]
    timeout: timedelta
    on_timeout: DecisionValue = "no-go"
    # "approval": a planned go/no-go step; "override": carry on past a failed step?
    kind: Literal["approval", "override"] = "approval"
    execution_id: str = ""  # for the `cutover approve` hint shown with the question


class Approver(Protocol):
    """Gets a decision from a person (or decides automatically in a rehearsal)."""

    automatic: bool  # True when no person is asked

    def decide(self, question: Question) -> Decision: ...


class AutoApprover:
    """For rehearsals: go at every planned approval, recorded as automatic.

    It never waves a failure through: asked to carry on past a failed step it says
    no-go, because a rehearsal exists to find exactly those failures.
    """

    automatic = True

    def __init__(self, by: str = "rehearsal (--auto-approve)") -> None:
        self._by = by

    def decide(self, question: Question) -> Decision:
        if question.kind == "override":
            return Decision(
                "no-go",
                by=self._by,
                automatic=True,
                comment="a rehearsal does not carry on past a failed step",
            )
        return Decision("go", by=self._by, comment="approved automatically", automatic=True)
