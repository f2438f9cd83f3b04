"""Kill the real CLI process with SIGKILL mid-rehearsal; the same command resumes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest
from prefect import get_client

from cutover.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
SHANXI = ROOT / "runbooks" / "shanxi-2023-shutdown-upgrade.yaml"
CUTOVER = Path(sys.executable).with_name("cutover")

pytestmark = pytest.mark.slow


def _completed(ledger_url: str) -> int:
    ledger = Ledger(ledger_url)
    try:
        return sum(
            1
            for execution in ledger.executions()
            for e in ledger.events(execution.id)
            if e.kind == "step-completed"
        )
    finally:
        ledger.close()


def test_sigkill_then_same_command_resumes_without_repeating_side_effects(
    prefect_api, fresh_sandbox, tmp_path
):
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    command = [
        str(CUTOVER),
        "rehearse",
        str(SHANXI),
        "--env",
        str(fresh_sandbox.profile_path),
        "--auto-approve",
        "--pace",
        "0.3",
        "--ledger",
        ledger_url,
    ]
    env = {**os.environ, "CUTOVER_HOME": str(tmp_path / "home")}

    first = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while _completed(ledger_url) < 9 and time.monotonic() < deadline:
        assert first.poll() is None, first.stdout.read().decode()
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done_before = _completed(ledger_url)
    killed_flow_run = Ledger(ledger_url).executions()[0].flow_run_id
    assert 9 <= done_before < 27

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming execution" in second.stdout

    ledger = Ledger(ledger_url)
    [execution] = ledger.executions()
    assert execution.status == "completed"
    events = ledger.events(execution.id)
    completed = Counter(e.step_id for e in events if e.kind == "step-completed")
    assert len(completed) == 27 and set(completed.values()) == {1}
    # No completed action ran twice ...
    actions = Counter(e.step_id for e in events if e.kind == "action-done")
    assert max(actions.values()) == 1, actions
    # ... and the systems saw each side effect once: each stop (partial or whole) of each
    # old-system channel was called once.
    stops = Counter(
        (call["path"], repr(call.get("body")))
        for call in fresh_sandbox.audit("old")
        if call["method"] == "POST" and call["path"].endswith("/stop")
    )
    assert stops and max(stops.values()) == 1, stops
    assert ledger.verify_chain(execution.id)[0]
    # The killed process's flow run does not linger as Running in the UI.
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(killed_flow_run)).state.is_crashed()
