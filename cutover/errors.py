"""One exception root for everything the engine raises on purpose.

    CutoverError
    ├── RunbookError        a runbook or profile has problems (one line each, with file:line:col)
    ├── PlanError           a valid runbook cannot be turned into a plan for this environment
    ├── LedgerError         the ledger refuses a record or is inconsistent
    ├── ApprovalError       a go/no-go cannot be given (not waiting, unknown step, bad input)
    └── StepError           an action failed; carries the step id and the evidence gathered so far
        ├── ConnectError    a target could not be reached (HTTP, SSH/SFTP, FTP, database)
        └── GateFailed      a gate's check did not hold

The CLI turns any of these into one line and exit code 1; anything else is a bug
and goes, with its traceback, to a debug log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class CutoverError(Exception):
    """Root of every error the engine raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in an input file: where it is and what to do about it."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class RunbookError(CutoverError):
    """A runbook or environment profile is invalid; `problems` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(CutoverError):
    """A runbook cannot be planned (for example an anchor override is malformed)."""


class LedgerError(CutoverError):
    """The ledger cannot record or answer what was asked."""


class ApprovalError(CutoverError):
    """A human decision cannot be delivered."""


class StepError(CutoverError):
    """An action failed. `evidence` holds what was observed before the failure."""

    def __init__(
        self, message: str, *, step_id: str | None = None, evidence: dict[str, Any] | None = None
    ) -> None:
        self.step_id = step_id
        self.evidence = evidence or {}
        super().__init__(message)


class ConnectError(StepError):
    """A target could not be reached."""


class GateFailed(StepError):
    """A gate's check did not hold."""
