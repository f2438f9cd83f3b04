"""Scheduled automatic runs: `cutover serve` deploys a runbook with a cron in its zone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import get_client
from prefect.deployments import run_deployment

from cutover.ledger import Ledger

RUNBOOK = Path(__file__).with_name("approval.yaml")
CUTOVER = Path(sys.executable).with_name("cutover")

pytestmark = pytest.mark.slow


def _wait_for_deployment(name: str, server: subprocess.Popen, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                return client.read_deployment_by_name(name)
            except Exception:
                time.sleep(0.5)
    raise AssertionError(f"deployment {name} never appeared")


def test_served_runbook_runs_on_demand_with_a_shanghai_schedule(
    prefect_api, fresh_sandbox, tmp_path
):
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    command = [
        str(CUTOVER),
        "serve",
        str(RUNBOOK),
        "--env",
        str(fresh_sandbox.profile_path),
        "--cron",
        "0 2 * * *",
        "--auto-approve",
        "--ledger",
        ledger_url,
        "--name",
        "nightly",
    ]
    env = {
        **os.environ,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "CUTOVER_HOME": str(tmp_path / "home"),
    }
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deployment = _wait_for_deployment("scheduled-cutover/nightly", server)
        [schedule] = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (
            "0 2 * * *",
            "Asia/Shanghai",
        )
        flow_run = run_deployment("scheduled-cutover/nightly", timeout=180)
        assert flow_run.state.is_completed(), flow_run.state
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    [execution] = Ledger(ledger_url).executions()
    assert execution.status == "completed"
    decisions = [e.data for e in Ledger(ledger_url).events(execution.id) if e.kind == "decision"]
    assert decisions and decisions[0]["automatic"] is True
