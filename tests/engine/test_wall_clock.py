"""`cutover run` waits on the wall clock: a step never starts before its time."""

from __future__ import annotations

import pendulum

from cutover.cli import main
from cutover.ledger import Ledger

RUNBOOK = """
name: wall-clock-check
title: Two steps a few seconds from now
timezone: Asia/Shanghai
teams: {{ops: {{name: Operations}}}}
phases:
  - id: only
    title: Only phase
    steps:
      - id: publish-notice
        title: Publish a notice
        owner: ops
        at: "{at}"
        action: {{type: notice.publish, target: old-system, text: "Upgrade at {at}"}}
        gates:
          - {{check: http, target: old-system, path: /notice, status: 200}}
      - id: clear-notice
        title: Clear it right after
        owner: ops
        after: [publish-notice]
        action: {{type: notice.clear, target: old-system}}
"""


def test_run_waits_for_each_steps_wall_clock_time(
    prefect_api, fresh_sandbox, tmp_path, monkeypatch
):
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    at = pendulum.now("Asia/Shanghai").add(seconds=4).replace(microsecond=0)
    runbook = tmp_path / "wall.yaml"
    runbook.write_text(RUNBOOK.format(at=at.format("YYYY-MM-DD HH:mm:ss")))
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"

    assert (
        main(
            ["run", str(runbook), "--env", str(fresh_sandbox.profile_path), "--ledger", ledger_url]
        )
        == 0
    )

    ledger = Ledger(ledger_url)
    [execution] = ledger.executions()
    assert execution.mode == "run" and execution.status == "completed"
    [started] = [
        e for e in ledger.events(execution.id, step_id="publish-notice") if e.kind == "step-started"
    ]
    assert pendulum.instance(started.recorded_at) >= at
    assert pendulum.parse(started.clock_at) >= at
