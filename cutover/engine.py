"""The step lifecycle, independent of Prefect: wait, act, gate, record, apply the policy.

`flows/` wraps these calls in Prefect flows and tasks; everything here can be
driven and tested on its own. The ledger decides what is done: a step whose
completion is recorded is skipped, and a step whose action is recorded but whose
gates were not is resumed at its gates, so no completed side effect repeats.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pendulum import DateTime

from cutover.clock import Clock
from cutover.decisions import Approver, Decision, Question
from cutover.errors import CutoverError, StepError
from cutover.ledger import Ledger
from cutover.plan import Plan, PlannedStep
from cutover.profile import Profile
from cutover.runbook import Runbook
from cutover.steps import Registry, StepContext, Verdict

log = logging.getLogger("cutover.engine")

Outcome = Literal["completed", "skipped", "failed"]


@dataclass(frozen=True)
class StepResult:
    step_id: str
    outcome: Outcome
    reason: str = ""
    # What to do now that the step failed (after any retries): halt, ask or rollback.
    policy: str = "halt"
    rollback_runbook: str | None = None


@dataclass
class Script:
    """A runbook with its plan, as one execution runs it (the cutover or its rollback)."""

    runbook: Runbook
    plan: Plan

    @property
    def name(self) -> str:
        return self.runbook.name


@dataclass
class Session:
    """What the steps of one execution share. Rebuilt in each process from the ledger."""

    execution_id: str
    profile: Profile
    ledger: Ledger
    clock: Clock
    registry: Registry
    workdir: Path
    approver: Approver
    # Where a question to a person can be answered (the Prefect flow run), for the ledger.
    locator: Callable[[], dict[str, str]] = lambda: {}

    def clock_text(self) -> str:
        return self.clock.now().isoformat()

    def record(
        self,
        script: Script,
        kind: str,
        *,
        step: PlannedStep | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.ledger.record(
            self.execution_id,
            kind,
            runbook=script.name,
            clock_at=self.clock_text(),
            phase_id=step.phase.id if step else None,
            step_id=step.step.id if step else None,
            data=data,
        )

    def save_clock(self) -> None:
        self.ledger.update_execution(self.execution_id, clock_now=self.clock_text())


def wait_for(session: Session, step: PlannedStep) -> None:
    """Sleep until the step's planned time (at once if it has passed) and remember the time."""
    session.clock.sleep_until(step.at)
    session.save_clock()


def execute_step(session: Session, script: Script, step: PlannedStep) -> StepResult:
    """Run one step to completion or failure, resuming from whatever the ledger holds."""
    kinds = session.ledger.step_kinds(session.execution_id, script.name).get(step.step.id, set())
    if "step-completed" in kinds:
        return StepResult(step.step.id, "skipped", "completed in an earlier run")
    policy = step.step.on_failure
    session.record(
        script,
        "step-started",
        step=step,
        data={
            "title": step.step.title,
            "owner": step.step.owner,
            "planned_at": step.at.isoformat(),
            "resumed": bool(kinds),
        },
    )
    action_done = "action-done" in kinds or step.step.action is None
    attempts = policy.attempts if policy.policy == "retry" else 1
    reason = ""
    for attempt in range(1, attempts + 1):
        if not action_done:
            action_done, reason = _run_action(session, script, step, attempt)
        if action_done:
            passed, reason = _run_gates(session, script, step, attempt)
            if passed:
                session.record(script, "step-completed", step=step, data={"attempts": attempt})
                return StepResult(step.step.id, "completed")
        if attempt < attempts:
            session.record(
                script,
                "step-retry",
                step=step,
                data={
                    "attempt": attempt,
                    "delay_seconds": policy.delay.total_seconds(),
                    "reason": reason,
                },
            )
            session.clock.sleep(policy.delay.total_seconds())
    final = policy.then if policy.policy == "retry" else policy.policy
    session.record(script, "step-failed", step=step, data={"reason": reason, "policy": final})
    return StepResult(
        step.step.id,
        "failed",
        reason,
        policy=final,
        rollback_runbook=policy.runbook or script.runbook.rollback,
    )


@dataclass
class _RecordingApprover:
    """Asks the session's approver and writes the question and the answer to the ledger."""

    session: Session
    script: Script
    step: PlannedStep

    def decide(self, question: Question) -> Decision:
        self.session.record(
            self.script,
            "approval-requested",
            step=self.step,
            data={
                "question": question.text,
                "approvers": list(question.approvers),
                "timeout_seconds": question.timeout.total_seconds(),
                "on_timeout": question.on_timeout,
                "waits_for_a_person": not self.session.approver.automatic,
                **self.session.locator(),
            },
        )
        question = replace(question, execution_id=self.session.execution_id)
        decision = self.session.approver.decide(question)
        self.session.record(self.script, "decision", step=self.step, data=decision.as_evidence())
        return decision


def _context(session: Session, script: Script, step: PlannedStep) -> StepContext:
    return StepContext(
        execution_id=session.execution_id,
        step_id=step.step.id,
        profile=session.profile,
        clock=session.clock,
        workdir=session.workdir,
        facts=session.ledger.facts(session.execution_id),
        log=logging.getLogger(f"cutover.step.{step.step.id}"),
        approver=_RecordingApprover(session, script, step),
    )


def _run_action(
    session: Session, script: Script, step: PlannedStep, attempt: int
) -> tuple[bool, str]:
    action = step.step.action
    assert action is not None
    step_type = session.registry.get("action", action.type)
    if step_type is None:  # the loader refuses this; a registry changed under a resumed run
        raise CutoverError(f"step {step.step.id}: action type {action.type!r} is not installed")
    try:
        evidence = step_type.fn(action.params, _context(session, script, step))
    except StepError as exc:
        reason = f"{action.type}: {exc}"
        session.record(
            script,
            "action-failed",
            step=step,
            data={
                "type": action.type,
                "attempt": attempt,
                "error": str(exc),
                "evidence": exc.evidence,
            },
        )
        return False, reason
    except Exception as exc:  # a bug in a step type must not lose the record of the run
        reason = f"{action.type}: unexpected {type(exc).__name__}: {exc}"
        log.error("step %s: %s\n%s", step.step.id, reason, traceback.format_exc())
        session.record(
            script,
            "action-failed",
            step=step,
            data={"type": action.type, "attempt": attempt, "error": reason, "unexpected": True},
        )
        return False, reason
    session.record(
        script,
        "action-done",
        step=step,
        data={"type": action.type, "attempt": attempt, "evidence": evidence or {}},
    )
    return True, ""


def _run_gates(
    session: Session, script: Script, step: PlannedStep, attempt: int
) -> tuple[bool, str]:
    """Run every gate (not just up to the first failure: the evidence is worth having)."""
    failures = []
    for index, gate in enumerate(step.step.gates):
        verdict = _check(session, script, step, gate.check, gate.params)
        kind = "gate-passed" if verdict.passed else "gate-failed"
        session.record(
            script,
            kind,
            step=step,
            data={
                "gate": index,
                "check": gate.check,
                "title": gate.title,
                "attempt": attempt,
                **verdict.as_evidence(),
            },
        )
        if not verdict.passed:
            failures.append(f"{gate.check}: {verdict.summary}")
    return not failures, "; ".join(failures)


def _check(session: Session, script: Script, step: PlannedStep, name: str, params: Any) -> Verdict:
    step_type = session.registry.get("check", name)
    if step_type is None:
        return Verdict(False, f"check type {name!r} is not installed")
    try:
        return step_type.fn(params, _context(session, script, step))
    except CutoverError as exc:
        return Verdict(False, f"could not check: {exc}")
    except Exception as exc:  # a broken check is a failed gate, never a passed one
        log.error("gate %s of %s: %s\n%s", name, step.step.id, exc, traceback.format_exc())
        return Verdict(False, f"check crashed: {type(exc).__name__}: {exc}")


def ask_after_failure(
    session: Session, script: Script, step: PlannedStep, result: StepResult
) -> Decision:
    """The `ask` policy: a person decides whether to carry on past a failed step."""
    question = Question(
        step_id=step.step.id,
        text=f"Step {step.step.id} ({step.step.title}) failed: {result.reason}. "
        "Go = carry on regardless; no-go = halt the cutover here.",
        approvers=(step.step.owner,),
        timeout=step.step.on_failure.decide_within,
        kind="override",
    )
    decision = _RecordingApprover(session, script, step).decide(question)
    if decision.go:
        session.record(script, "step-completed", step=step, data={"overridden": True})
    return decision


def progress(session: Session, script: Script) -> tuple[int, int]:
    """(steps completed, steps planned) for this script."""
    kinds = session.ledger.step_kinds(session.execution_id, script.name)
    done = sum(1 for s in script.plan.steps if "step-completed" in kinds.get(s.step.id, ()))
    return done, len(script.plan.steps)


def planned_start(plan: Plan) -> DateTime:
    return min(s.at for s in plan.steps)
