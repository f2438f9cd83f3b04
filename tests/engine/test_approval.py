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


def _start(profile: Path, ledger_url: str) -> tuple[threading.Thread, dict[str, int]]:
    result: dict[str, int] = {}

    def run() -> None:
        result["code"] = main(
            [
                "rehearse",
                str(RUNBOOK),
                "--env",
                str(profile),
                "--new",
                "--ledger",
                ledger_url,
                "--poll-interval",
                "0.2",
            ]
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _wait_for_question(ledger_url: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ledger = Ledger(ledger_url)
        for execution in ledger.executions():
            if any(e.kind == "approval-requested" for e in ledger.events(execution.id)):
                return execution.id
        time.sleep(0.2)
    raise AssertionError("the run never asked for a decision")


@pytest.fixture
def ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def test_go_from_the_command_line_resumes_the_paused_run(prefect_api, fresh_sandbox, ledger_url):
    thread, result = _start(fresh_sandbox.profile_path, ledger_url)
    execution_id = _wait_for_question(ledger_url)
    # While paused, the step after the approval has not run: the notice is still up.
    assert httpx.get(f"{fresh_sandbox.old_url}/notice").json()["active"] is True

    code = main(
        [
            "approve",
            execution_id,
            "--step",
            "go-no-go",
            "--by",
            "Li Ming (duty lead)",
            "--decision",
            "go",
            "--comment",
            "checks reviewed",
            "--ledger",
            ledger_url,
        ]
    )
    assert code == 0
    thread.join(timeout=90)
    assert result["code"] == 0

    ledger = Ledger(ledger_url)
    [decision] = [e for e in ledger.events(execution_id) if e.kind == "decision"]
    assert decision.data == {
        "decision": "go",
        "by": "Li Ming (duty lead)",
        "comment": "checks reviewed",
        "automatic": False,
    }
    assert ledger.execution(execution_id).status == "completed"
    assert httpx.get(f"{fresh_sandbox.old_url}/notice").json()["active"] is False


def test_no_go_halts_and_a_second_answer_is_refused(prefect_api, fresh_sandbox, ledger_url, capsys):
    thread, result = _start(fresh_sandbox.profile_path, ledger_url)
    execution_id = _wait_for_question(ledger_url)
    assert (
        main(
            [
                "approve",
                execution_id,
                "--step",
                "go-no-go",
                "--by",
                "Chen Jie",
                "--decision",
                "no-go",
                "--ledger",
                ledger_url,
            ]
        )
        == 0
    )
    thread.join(timeout=90)
    assert result["code"] == 2  # halted

    ledger = Ledger(ledger_url)
    kinds = ledger.step_kinds(execution_id, "approval-check")
    assert "step-failed" in kinds["go-no-go"]
    assert "clear-notice" not in kinds
    assert ledger.execution(execution_id).status == "halted"

    capsys.readouterr()
    assert (
        main(
            [
                "approve",
                execution_id,
                "--step",
                "go-no-go",
                "--by",
                "Chen Jie",
                "--decision",
                "go",
                "--ledger",
                ledger_url,
            ]
        )
        == 1
    )
    assert "already decided" in capsys.readouterr().err
