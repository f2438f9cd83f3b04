"""The step lifecycle without Prefect: resume at the gates, retries on the run's clock."""

from __future__ import annotations

from pathlib import Path

from cutover.decisions import AutoApprover
from cutover.engine import execute_step, wait_for
from cutover.execution import load_inputs, open_session, start_or_resume
from cutover.ledger import Ledger

RUNBOOK = """
name: engine-check
title: Engine check
timezone: Asia/Shanghai
teams: {ops: {name: Operations}}
phases:
  - id: only
    title: Only phase
    steps:
      - id: stop-online-hall
        title: Stop the web hall
        owner: ops
        at: "2023-11-23 18:00"
        action: {type: channels.stop, target: old-system, channels: [online-hall]}
        gates:
          - {check: channels.state, target: old-system, channels: [online-hall], state: stopped}
          - {check: http, target: old-system, path: /health, status: 200}
        on_failure: {policy: retry, attempts: 3, delay: 10m, then: halt}
"""


def _session(tmp_path: Path, profile: Path):
    path = tmp_path / "engine.yaml"
    path.write_text(RUNBOOK)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    execution, _ = start_or_resume(
        ledger, load_inputs(path, profile), mode="rehearse", options={"auto_approve": True}
    )
    session, script = open_session(ledger, execution.id, lambda _e: AutoApprover())
    return session, script, script.plan.steps[0]


def test_a_step_resumes_at_its_gates_without_repeating_its_action(fresh_sandbox, tmp_path):
    fresh_sandbox.fault("old:health-fail")  # the second gate fails: the step fails
    session, script, step = _session(tmp_path, fresh_sandbox.profile_path)
    wait_for(session, step)
    failed = execute_step(session, script, step)
    assert (failed.outcome, failed.policy) == ("failed", "halt")
    # Retried on the rehearsal clock: three attempts, ten (virtual) minutes apart.
    assert session.clock.now().isoformat().startswith("2023-11-23T18:20")
    kinds = [e.kind for e in session.ledger.events(session.execution_id)]
    assert kinds.count("action-done") == 1 and kinds.count("step-retry") == 2

    fresh_sandbox.clear_fault("old:health-fail")
    done = execute_step(session, script, step)
    assert done.outcome == "completed", done.reason
    stops = [c for c in fresh_sandbox.audit("old") if c["path"].endswith("/stop")]
    assert len(stops) == 1  # the stop happened once, before the failure
    assert execute_step(session, script, step).outcome == "skipped"
