"""A go/no-go pauses the real flow run; `cutover approve` resumes it with a typed decision."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from cutover.cli import main
from cutover.ledger import Ledger

RUNBOOK = Path(__file__).with_name("approval.yaml")


def _start(runbook: Path, profile: Path, ledger_url: str) -> tuple[threading.Thread, dict]:
    """Rehearse in a thread without --auto-approve, so the go/no-go really pauses."""
    result: dict[str, int] = {}
    argv = ["rehearse", str(runbook), "--env", str(profile), "--new", "--ledger", ledger_url]

    def run() -> None:
        result["code"] = main([*argv, "--poll-interval", "0.2"])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _wait_for_question(ledger_url: str, timeout: float = 90.0) -> tuple[str, str]:
    """(execution id, paused flow run id) once the run has asked its question."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ledger = Ledger(ledger_url)
        for execution in ledger.executions():
            for event in ledger.events(execution.id):
                if event.kind == "approval-requested":
                    return execution.id, event.data["flow_run_id"]
        time.sleep(0.2)
    raise AssertionError("the run never asked for a decision")


def _approve(run_id: str, ledger_url: str, decision: str, by: str, *extra: str) -> int:
    argv = ["approve", run_id, "--step", "go-no-go", "--by", by, "--decision", decision]
    return main([*argv, "--ledger", ledger_url, *extra])


def _decisions(ledger_url: str, execution_id: str) -> list[dict]:
    return [e.data for e in Ledger(ledger_url).events(execution_id) if e.kind == "decision"]


@pytest.fixture
def ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def test_go_from_the_command_line_resumes_the_paused_run(
    prefect_api, fresh_sandbox, ledger_url, capsys
):
    thread, result = _start(RUNBOOK, fresh_sandbox.profile_path, ledger_url)
    execution_id, _ = _wait_for_question(ledger_url)
    # While paused, the step after the approval has not run: the notice is still up.
    assert httpx.get(f"{fresh_sandbox.old_url}/notice").json()["active"] is True

    # `cutover status` says what the run waits for and how to answer.
    capsys.readouterr()
    assert main(["status", execution_id, "--ledger", ledger_url]) == 0
    assert "waiting for a decision at go-no-go: Carry on?" in capsys.readouterr().out
    # An answer in nobody's name is refused by the form's schema; the run stays paused.
    assert _approve(execution_id, ledger_url, "go", "  ") == 1
    by = "Li Ming (duty lead)"
    assert _approve(execution_id, ledger_url, "go", by, "--comment", "checks reviewed") == 0
    thread.join(timeout=90)
    assert result["code"] == 0

    assert _decisions(ledger_url, execution_id) == [
        {"decision": "go", "by": by, "comment": "checks reviewed", "automatic": False}
    ]
    assert Ledger(ledger_url).execution(execution_id).status == "completed"
    assert httpx.get(f"{fresh_sandbox.old_url}/notice").json()["active"] is False


def test_no_go_by_flow_run_id_halts_and_a_second_answer_is_refused(
    prefect_api, fresh_sandbox, ledger_url, capsys
):
    thread, result = _start(RUNBOOK, fresh_sandbox.profile_path, ledger_url)
    execution_id, flow_run_id = _wait_for_question(ledger_url)
    # The Prefect flow run id shown in the UI works as well as the execution id.
    assert _approve(flow_run_id, ledger_url, "no-go", "Chen Jie") == 0
    thread.join(timeout=90)
    assert result["code"] == 2  # halted

    ledger = Ledger(ledger_url)
    kinds = ledger.step_kinds(execution_id, "approval-check")
    assert "step-failed" in kinds["go-no-go"]
    assert "clear-notice" not in kinds
    assert ledger.execution(execution_id).status == "halted"

    capsys.readouterr()
    assert _approve(execution_id, ledger_url, "go", "Chen Jie") == 1
    assert "already decided" in capsys.readouterr().err


def test_no_answer_by_the_deadline_is_the_runbooks_on_timeout(
    prefect_api, fresh_sandbox, ledger_url, tmp_path
):
    runbook = tmp_path / "approval.yaml"
    runbook.write_text(RUNBOOK.read_text().replace("timeout: 1h", "timeout: 2s"))
    thread, result = _start(runbook, fresh_sandbox.profile_path, ledger_url)
    execution_id, _ = _wait_for_question(ledger_url)
    thread.join(timeout=90)
    # Our deadline answered before Prefect's pause timeout could fail the run.
    assert result["code"] == 2
    [decision] = _decisions(ledger_url, execution_id)
    assert decision["decision"] == "no-go"
    assert decision["by"].startswith("cutover (no answer within")
    assert decision["automatic"] is True


ASK_RUNBOOK = """
name: ask-check
title: A failed gate under the ask policy
timezone: Asia/Shanghai
teams: {ops: {name: Operations}}
phases:
  - id: only
    title: Only phase
    steps:
      - id: check-new-version
        title: The new system already runs the new version
        owner: ops
        at: "2023-11-30 21:00"
        gates:
          - {check: http, target: new-system, path: /version, json: {version: "2099.1.0"}}
        on_failure: ask
      - id: publish-notice
        title: Publish a notice
        owner: ops
        at: "2023-11-30 22:00"
        action: {type: notice.publish, target: old-system, text: "Carried on past a failed check"}
"""


def test_ask_policy_lets_a_person_carry_on_past_a_failed_gate(
    prefect_api, fresh_sandbox, ledger_url, tmp_path
):
    runbook = tmp_path / "ask.yaml"
    runbook.write_text(ASK_RUNBOOK)
    thread, result = _start(runbook, fresh_sandbox.profile_path, ledger_url)
    execution_id, _ = _wait_for_question(ledger_url)
    argv = [
        "approve",
        execution_id,
        "--step",
        "check-new-version",
        "--by",
        "Zhao Lei",
        "--decision",
        "go",
        "--comment",
        "version check is cosmetic",
        "--ledger",
        ledger_url,
    ]
    assert main(argv) == 0
    thread.join(timeout=90)
    assert result["code"] == 0

    ledger = Ledger(ledger_url)
    events = ledger.events(execution_id, step_id="check-new-version")
    kinds = [e.kind for e in events]
    assert kinds.index("gate-failed") < kinds.index("approval-requested") < kinds.index("decision")
    [completed] = [e for e in events if e.kind == "step-completed"]
    assert completed.data == {"overridden": True}
    assert "step-completed" in ledger.step_kinds(execution_id, "ask-check")["publish-notice"]
    assert httpx.get(f"{fresh_sandbox.old_url}/notice").json()["active"] is True
