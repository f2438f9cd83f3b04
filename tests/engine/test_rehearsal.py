"""End-to-end rehearsals of the shipped runbooks against the real sandbox servers."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)

from cutover.cli import main
from cutover.ledger import Execution, Ledger

ROOT = Path(__file__).resolve().parents[2]
SHANXI = ROOT / "runbooks" / "shanxi-2023-shutdown-upgrade.yaml"
QINGYUAN = ROOT / "runbooks" / "qingyuan-2021-rollback.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _rehearse_shanxi(profile: Path, home: Path) -> tuple[int, Ledger, Execution]:
    """Rehearse the Shanxi runbook through the real CLI; the exit code and the one execution."""
    ledger_url = f"sqlite:///{home / 'ledger.db'}"
    argv = ["rehearse", str(SHANXI), "--env", str(profile), "--auto-approve", "--new"]
    code = main([*argv, "--ledger", ledger_url])
    ledger = Ledger(ledger_url)
    [execution] = ledger.executions()
    return code, ledger, execution


def _kinds(ledger: Ledger, execution_id: str, runbook: str) -> dict[str, set[str]]:
    return ledger.step_kinds(execution_id, runbook)


def test_shanxi_rehearsal_completes_every_step(prefect_api, fresh_sandbox, home, capsys):
    code, ledger, execution = _rehearse_shanxi(fresh_sandbox.profile_path, home)
    out = capsys.readouterr().out
    assert code == 0, out
    assert execution.status == "completed"
    kinds = _kinds(ledger, execution.id, "shanxi-2023-shutdown-upgrade")
    assert len(kinds) == 27
    assert all("step-completed" in k for k in kinds.values()), kinds
    assert not any("gate-failed" in k or "step-failed" in k for k in kinds.values())
    assert ledger.verify_chain(execution.id)[0]
    # The go/no-go was answered automatically, and the ledger says so.
    [decision] = [e for e in ledger.events(execution.id) if e.kind == "decision"]
    assert decision.data["automatic"] is True and decision.data["decision"] == "go"
    # The rehearsal clock ran the eleven-day schedule: the last step is on 2 December.
    assert execution.clock_now.startswith("2023-12-02T09:00")

    # The real systems moved: old stopped, new serving, data loaded, tax bureau acknowledged.
    old = httpx.get(f"{fresh_sandbox.old_url}/channels").json()["channels"]
    new = httpx.get(f"{fresh_sandbox.new_url}/channels").json()["channels"]
    assert {c["state"] for c in old} == {"stopped"}
    assert {c["state"] for c in new} == {"running"}
    assert httpx.get(f"{fresh_sandbox.new_url}/version").json()["version"] == "2023.12.0"
    ack = fresh_sandbox.dir / "drop" / "outbox" / "shanxi-2023-11" / "ack.json"
    assert '"accepted"' in ack.read_text()
    engine = sa.create_engine(f"sqlite:///{fresh_sandbox.dir / 'new.db'}")
    with engine.connect() as conn:
        residents = conn.execute(
            sa.text("select count(*) from persons where insurance_type = 'urban_rural_resident'")
        ).scalar()
        persons = conn.execute(sa.text("select count(*) from persons")).scalar()
    engine.dispose()
    assert residents == 0 and persons > 1000
    report = (Path(execution.workdir) / "report.md").read_text()
    assert report.count("| completed |") == 27 and "hash chain intact" in report
    # The evidence a leadership group signs: gate verdicts and the export's row counts.
    assert "- passed: all 14 channels stopped" in report
    assert "| persons |" in report and "## Sign-off" in report
    assert "execution " in out and "completed" in out
    _assert_prefect_shows_phases_steps_and_artifacts(execution.flow_run_id)


def _assert_prefect_shows_phases_steps_and_artifacts(flow_run_id: str) -> None:
    """What people watching the Prefect UI see: a subflow per phase, a task per step, artifacts."""
    phases = [
        "prepare",
        "stop-collection",
        "settle",
        "shutdown",
        "freeze-export",
        "handoff",
        "deploy",
        "restore",
        "aftercare",
    ]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        assert run.state.is_completed()
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
            )
        )
        assert sorted(c.name for c in children) == sorted(f"main-{p}" for p in phases)
        steps = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[c.id for c in children]))
        )
        assert len(steps) == 27 and all(t.state.is_completed() for t in steps)
        assert "12-01 08:00 restore-core" in {t.name for t in steps}
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id, *(c.id for c in children)])
            )
        )
    keys = {a.key for a in artifacts}
    assert {"plan", "timeline", "progress", "cutover-report"} <= keys
    assert any(k and k.startswith("reconcile-export-data") for k in keys)
    [timeline] = [a for a in artifacts if a.key == "timeline"]
    assert len(json.loads(timeline.data)) == 27


def test_core_health_failure_rolls_back_to_an_unchanged_old_system(
    prefect_api, fresh_sandbox, home, capsys
):
    fresh_sandbox.fault("new:health-fail")
    code, ledger, execution = _rehearse_shanxi(fresh_sandbox.profile_path, home)
    out = capsys.readouterr().out
    assert code == 3, out
    assert execution.status == "rolled-back"
    main_kinds = _kinds(ledger, execution.id, "shanxi-2023-shutdown-upgrade")
    assert "step-failed" in main_kinds["restore-core"]
    # Retried three times before rolling back, and nothing after restore-core ran.
    retries = [
        e for e in ledger.events(execution.id, step_id="restore-core") if e.kind == "step-retry"
    ]
    assert len(retries) == 2
    # The rollback starts when the retries have run out: 08:00 plus two 5-minute delays.
    assert (
        Ledger(ledger.url).facts(execution.id).get("rollback-anchor").startswith("2023-12-01T08:10")
    )
    assert "restore-interfaces" not in main_kinds
    back = _kinds(ledger, execution.id, "qingyuan-2021-rollback")
    assert all("step-completed" in k for k in back.values()), back
    proof = [
        e
        for e in ledger.events(execution.id, step_id="prove-old-unchanged")
        if e.kind == "gate-passed"
    ]
    assert proof and proof[0].data["check"] == "reconcile.checksums"

    old = httpx.get(f"{fresh_sandbox.old_url}/channels").json()["channels"]
    assert {c["state"] for c in old} == {"running"}
    assert httpx.get(f"{fresh_sandbox.new_url}/admin/access").json()["external"] is False
    assert "ROLLBACK" in out
    # In the Prefect UI the run ends red, named for what happened, and the step that
    # triggered it is a failed task run carrying the reason.
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(execution.flow_run_id))
        assert (run.state.type.value, run.state.name) == ("FAILED", "RolledBack")
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
            )
        )
    [core] = [t for t in tasks if t.name.endswith("restore-core")]
    assert core.state.is_failed() and "/health" in core.state.message
