"""Injected faults stop the cutover at the right gate; fixed, the same command resumes it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cutover.cli import main
from cutover.ledger import Ledger

SHANXI = Path(__file__).resolve().parents[2] / "runbooks" / "shanxi-2023-shutdown-upgrade.yaml"
RUNBOOK = "shanxi-2023-shutdown-upgrade"

pytestmark = pytest.mark.slow


def _rehearse(profile: Path, ledger_url: str) -> int:
    return main(
        ["rehearse", str(SHANXI), "--env", str(profile), "--auto-approve", "--ledger", ledger_url]
    )


@pytest.fixture
def ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.mark.parametrize(
    ("fault", "step", "reason"),
    [
        ("data:unpaid-benefits", "benefits-paid", "sql: select count(*) from benefit_payments"),
        ("receiver:count-mismatch", "upload-to-tax-drop", "sftp.ack"),
    ],
)
def test_a_failed_gate_halts_at_its_step(
    prefect_api, fresh_sandbox, ledger_url, fault, step, reason
):
    fresh_sandbox.fault(fault)
    assert _rehearse(fresh_sandbox.profile_path, ledger_url) == 2  # halted

    ledger = Ledger(ledger_url)
    [execution] = ledger.executions()
    assert execution.status == "halted"
    kinds = ledger.step_kinds(execution.id, RUNBOOK)
    [failed] = [s for s, k in kinds.items() if "step-failed" in k]
    assert failed == step
    failure = [e for e in ledger.events(execution.id, step_id=step) if e.kind == "step-failed"]
    assert reason in failure[-1].data["reason"]
    # The rehearsal's auto-approver refused to carry on past the failure, and said so.
    [override] = [e for e in ledger.events(execution.id, step_id=step) if e.kind == "decision"]
    assert override.data["decision"] == "no-go" and override.data["automatic"] is True
    # Nothing after the failed step ran.
    order = [s.id for s in _plan_steps()]
    assert not set(order[order.index(step) + 1 :]) & set(kinds)


def test_a_channel_that_refuses_to_stop_halts_then_the_same_command_resumes(
    prefect_api, fresh_sandbox, ledger_url
):
    fresh_sandbox.fault("old:refuse-stop:online-hall")
    assert _rehearse(fresh_sandbox.profile_path, ledger_url) == 2
    ledger = Ledger(ledger_url)
    [execution] = ledger.executions()
    failed = [e for e in ledger.events(execution.id) if e.kind == "step-failed"]
    assert [e.step_id for e in failed] == ["stop-collection-channels"]
    assert "online-hall" in failed[0].data["reason"]
    # Every other channel stopped its collection and account business; online-hall refused.
    channels = httpx.get(f"{fresh_sandbox.old_url}/channels").json()["channels"]
    states = {c["name"]: c["state"] for c in channels if c["group"] in ("counter", "online")}
    assert states.pop("online-hall") == "running"
    assert set(states.values()) == {"partial"}

    fresh_sandbox.clear_fault("old:refuse-stop:online-hall")  # the operator fixes the channel
    assert _rehearse(fresh_sandbox.profile_path, ledger_url) == 0

    [execution] = ledger.executions()  # resumed, not a second execution
    assert execution.status == "completed"
    events = ledger.events(execution.id)
    for step in ("find-unpaid-offices", "tell-unpaid-offices", "publish-announcement"):
        assert sum(e.kind == "step-started" for e in events if e.step_id == step) == 1
    # Each stop that succeeded happened once: the resumed step stopped only online-hall.
    done = [
        (c["path"], repr(c["body"]))
        for c in fresh_sandbox.audit("old")
        if c["path"].endswith("/stop") and c["status"] == 200
    ]
    assert len(done) == len(set(done))
    assert ("/channels/online-hall/stop", repr({"business": ["collection", "account"]})) in done


def _plan_steps():
    from cutover.load import load_runbook
    from cutover.plan import build_plan
    from cutover.steps import load_step_types

    return build_plan(load_runbook(SHANXI, None, load_step_types())).steps
