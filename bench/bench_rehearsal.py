"""Rehearsal speed: the Shanxi schedule through Prefect, against the same engine without it.

    .venv/bin/python bench/bench_rehearsal.py [--repeat 3]

Each repetition starts a fresh sandbox and rehearses the whole eleven-day Shanxi
schedule twice:
  - through Prefect (`cutover rehearse` in a subprocess, as a release engineer runs it:
    one flow run, a subflow per phase, a task per step, artifacts, logs to the API);
  - with the bare engine (`cutover.engine.execute_step` in a loop, no Prefect), which is
    the floor: the time the steps' own work takes (HTTP, SQL, SFTP, receiver) plus the
    ledger writes.
The ratio of the medians is what orchestration through Prefect costs. Per-step times
come from the ledger (step-started to step-completed, wall clock).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cutover import server  # noqa: E402
from cutover.decisions import AutoApprover  # noqa: E402
from cutover.engine import execute_step, wait_for  # noqa: E402
from cutover.execution import load_inputs, open_session, start_or_resume  # noqa: E402
from cutover.ledger import Ledger  # noqa: E402
from sandbox.testing import running_sandbox  # noqa: E402

SHANXI = ROOT / "runbooks" / "shanxi-2023-shutdown-upgrade.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def step_seconds(ledger: Ledger, execution_id: str) -> dict[str, float]:
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for event in ledger.events(execution_id):
        if event.kind == "step-started":
            started[event.step_id] = event.recorded_at.timestamp()
        elif event.kind == "step-completed" and event.step_id in started:
            took[event.step_id] = event.recorded_at.timestamp() - started[event.step_id]
    return took


def through_prefect(work: Path, api: str) -> tuple[float, float, dict[str, float]]:
    with running_sandbox(work / "sandbox") as sb:
        ledger_url = f"sqlite:///{work / 'prefect-ledger.db'}"
        env = {**os.environ, "PREFECT_API_URL": api, "CUTOVER_HOME": str(work / "home")}
        command = [str(Path(sys.executable).with_name("cutover")), "rehearse", str(SHANXI),
                   "--env", str(sb.profile_path), "--auto-approve", "--new", "--ledger", ledger_url]
        began = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"rehearsal failed:\n{done.stdout}\n{done.stderr}")
        ledger = Ledger(ledger_url)
        [execution] = ledger.executions()
        return wall, flow_seconds(execution.flow_run_id, api), step_seconds(ledger, execution.id)


def flow_seconds(flow_run_id: str, api: str) -> float:
    """How long the cutover flow run itself took, by the Prefect server's clock."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    return (run.end_time - run.start_time).total_seconds()


def bare_engine(work: Path) -> tuple[float, dict[str, float]]:
    with running_sandbox(work / "sandbox-bare") as sb:
        ledger = Ledger(f"sqlite:///{work / 'bare-ledger.db'}")
        began = time.perf_counter()
        loaded = load_inputs(SHANXI, sb.profile_path)
        execution, _ = start_or_resume(ledger, loaded, mode="rehearse",
                                       options={"auto_approve": True}, new=True)
        session, script = open_session(ledger, execution.id, lambda _execution: AutoApprover())
        for step in script.plan.steps:
            wait_for(session, step)
            result = execute_step(session, script, step)
            if result.outcome == "failed":
                raise SystemExit(f"bare engine: {step.step.id} failed: {result.reason}")
        wall = time.perf_counter() - began
        return wall, step_seconds(ledger, execution.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cutover-bench-") as tmp:
        home = Path(tmp) / "prefect"
        os.environ["PREFECT_HOME"] = str(home)
        api = server.start(home, _free_port(), timeout=180)
        try:
            prefect_runs, flow_runs, bare_runs, per_step = [], [], [], {}
            for n in range(args.repeat):
                wall, flow_time, steps = through_prefect(Path(tmp) / f"p{n}", api)
                prefect_runs.append(wall)
                flow_runs.append(flow_time)
                for step, seconds in steps.items():
                    per_step.setdefault(step, []).append(seconds)
                bare_runs.append(bare_engine(Path(tmp) / f"b{n}")[0])
        finally:
            server.stop(home)
    steps = len(per_step)
    p_med, b_med = statistics.median(prefect_runs), statistics.median(bare_runs)
    print(f"Shanxi schedule, {steps} steps, {args.repeat} runs each (medians)")
    print(f"  cutover rehearse (Prefect, whole command):  {p_med:6.2f} s"
          f"   ({p_med / steps * 1000:.0f} ms per step)")
    f_med = statistics.median(flow_runs)
    print(f"    of which the cutover flow run itself:     {f_med:6.2f} s"
          f"   ({f_med / steps * 1000:.0f} ms per step; the rest is start-up)")
    print(f"  bare engine, same steps, no Prefect:        {b_med:6.2f} s"
          f"   ({b_med / steps * 1000:.0f} ms per step)")
    print(f"  ratio Prefect / bare:                       {p_med / b_med:6.1f} x")
    print("  slowest steps through Prefect (median s, step-started to step-completed):")
    medians = sorted(((statistics.median(v), k) for k, v in per_step.items()), reverse=True)
    for seconds, step in medians[:6]:
        print(f"    {seconds:6.3f}  {step}")
    print(f"  median step: {statistics.median(m for m, _ in medians):.3f} s")


if __name__ == "__main__":
    main()
