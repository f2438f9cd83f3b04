"""Starting, finding and reopening executions.

An execution is one attempt at running a runbook on an environment. Everything a
process needs to continue it (paths, mode, options, the clock's last reading) is
in its ledger row, so any process, a resumed run or a phase subflow, can reopen
it from (ledger URL, execution id) alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum

from cutover.clock import Clock, RehearsalClock, WallClock
from cutover.decisions import Approver
from cutover.engine import Script, Session, planned_start
from cutover.errors import LedgerError
from cutover.ledger import Execution, Ledger
from cutover.load import load_profile, load_runbook, load_with_rollbacks
from cutover.plan import build_plan
from cutover.runbook import Runbook
from cutover.steps import Registry, load_step_types

# The anchor a rollback runbook times its steps from; set to the moment the rollback starts.
ROLLBACK_ANCHOR = "start"


def cutover_home() -> Path:
    """Where ledgers, work directories and debug logs go unless a profile says otherwise."""
    return Path(os.environ.get("CUTOVER_HOME", ".cutover")).resolve()


@dataclass(frozen=True)
class Loaded:
    runbook: Runbook
    runbook_path: Path
    profile_path: Path
    registry: Registry
    profile: Any


def load_inputs(runbook_path: Path, profile_path: Path) -> Loaded:
    """Load and validate a runbook against a profile; raises RunbookError listing every problem."""
    registry = load_step_types()
    profile = load_profile(profile_path)
    runbook = load_with_rollbacks(runbook_path, profile, registry)
    return Loaded(runbook, runbook_path.resolve(), profile_path.resolve(), registry, profile)


def ledger_url_for(loaded: Loaded, override: str | None = None) -> str:
    if override:
        return override
    if loaded.profile.ledger:
        return loaded.profile.ledger
    return f"sqlite:///{cutover_home() / 'ledger.db'}"


def start_or_resume(
    ledger: Ledger,
    loaded: Loaded,
    *,
    mode: str,
    options: dict[str, Any],
    new: bool = False,
    execution_id: str | None = None,
) -> tuple[Execution, bool]:
    """Return (execution, resumed). Re-running the same command resumes the unfinished one."""
    existing: Execution | None = None
    if execution_id:
        existing = _existing(ledger, execution_id, loaded)
    elif not new:
        existing = ledger.find_unfinished(loaded.runbook.name, loaded.profile.name, mode)
    if existing is not None:
        if existing.options != {**existing.options, **options}:
            ledger.update_execution(existing.id, options={**existing.options, **options})
        if existing.status != "running":
            ledger.update_execution(existing.id, status="running")
        return ledger.execution(existing.id), True
    new_id = execution_id or _new_id(ledger, f"{loaded.runbook.name}-{mode}")
    workdir = Path(loaded.profile.workdir or cutover_home()) / "executions" / new_id
    workdir.mkdir(parents=True, exist_ok=True)
    execution = ledger.create_execution(
        execution_id=new_id,
        runbook=loaded.runbook.name,
        runbook_path=str(loaded.runbook_path),
        profile=loaded.profile.name,
        profile_path=str(loaded.profile_path),
        mode=mode,
        options=options,
        workdir=str(workdir.resolve()),
    )
    return execution, False


def _existing(ledger: Ledger, execution_id: str, loaded: Loaded) -> Execution | None:
    try:
        existing = ledger.execution(execution_id)
    except LedgerError:
        return None
    if existing.runbook != loaded.runbook.name:
        raise LedgerError(f"execution {execution_id} runs {existing.runbook}, "
                          f"not {loaded.runbook.name}; pick another --execution-id")
    return existing


def _new_id(ledger: Ledger, prefix: str) -> str:
    """RUNBOOK-MODE-<UTC time>, with -2, -3 ... if two start within the same second."""
    base = f"{prefix}-{pendulum.now('UTC').format('YYYYMMDD[T]HHmmss')}"
    taken = {e.id for e in ledger.executions()}
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def open_session(
    ledger: Ledger,
    execution_id: str,
    approver_factory: Callable[[Execution], Approver],
) -> tuple[Session, Script]:
    """Rebuild the session and the main script of an execution from its ledger row."""
    execution = ledger.execution(execution_id)
    loaded = load_inputs(Path(execution.runbook_path), Path(execution.profile_path))
    plan = build_plan(loaded.runbook)
    clock = _clock_for(execution, loaded.runbook, planned_start(plan))
    session = Session(
        execution_id=execution.id,
        profile=loaded.profile,
        ledger=ledger,
        clock=clock,
        registry=loaded.registry,
        workdir=Path(execution.workdir),
        approver=approver_factory(execution),
    )
    return session, Script(loaded.runbook, plan)


def rollback_script(session: Session, main: Script, runbook_ref: str) -> Script:
    """Load the rollback runbook, anchored on the moment the rollback started (kept as a fact)."""
    path = (Path(main.runbook.source).parent / runbook_ref).resolve()
    runbook = load_runbook(path, session.profile, session.registry)
    facts = session.ledger.facts(session.execution_id)
    anchor_text = facts.get("rollback-anchor")
    if anchor_text is None:
        anchor_text = session.clock.now().isoformat()
        facts.put("rollback-anchor", anchor_text)
    anchor = pendulum.parse(anchor_text).in_timezone(runbook.timezone)
    plan = build_plan(runbook, anchors={ROLLBACK_ANCHOR: anchor})
    return Script(runbook, plan)


def _clock_for(execution: Execution, runbook: Runbook, start: pendulum.DateTime) -> Clock:
    if execution.mode != "rehearse":
        return WallClock(runbook.timezone)
    if execution.clock_now:
        now = pendulum.parse(execution.clock_now).in_timezone(runbook.timezone)
    else:
        now = start - timedelta(minutes=1)
    return RehearsalClock(now, pace=float(execution.options.get("pace", 0.0)))
