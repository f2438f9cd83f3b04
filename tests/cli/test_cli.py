"""The command line: one line per problem, exit codes, no tracebacks for user mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cutover.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHANXI = ROOT / "runbooks" / "shanxi-2023-shutdown-upgrade.yaml"
PROFILE = ROOT / "tests" / "runbook" / "profile.yaml"
BROKEN = ROOT / "tests" / "runbook" / "broken"


def test_shipped_runbooks_validate(capsys):
    runbooks = sorted(str(p) for p in (ROOT / "runbooks").glob("*.yaml"))
    assert main(["validate", *runbooks, "--env", str(PROFILE)]) == 0
    assert capsys.readouterr().out.count(": ok") == len(runbooks) == 2


def test_every_problem_of_every_file_is_one_line_and_exit_1(capsys):
    files = [BROKEN / "07-november-31.yaml", BROKEN / "22-plain-secret.yaml"]
    assert main(["validate", *map(str, files), "--env", str(PROFILE)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "2 problem(s) found"
    assert err[0].endswith(
        ":30:13: phases[1].steps[0].at: 2023-11-31 is not a date (November has 30 days)"
    )
    assert "secret written in plain text" in err[1] and "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("path", ["/nonexistent/runbook.yaml", str(ROOT / "runbooks")])
def test_a_file_that_cannot_be_read_is_a_problem_not_a_pass(path, capsys):
    assert main(["validate", path, "--env", str(PROFILE)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:1:1: ")


def test_plan_json_lists_every_step_with_its_time(capsys):
    assert main(["plan", str(SHANXI), "--env", str(PROFILE), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    steps = plan["steps"]
    assert len(steps) == 27
    restore = next(s for s in steps if s["id"] == "restore-core")
    assert restore["at"].startswith("2023-12-01T08:00:00+08:00")
    freeze = next(s for s in steps if s["id"] == "freeze-data")
    assert freeze["at"].startswith("2023-11-25T00:00:00+08:00")  # "2023-11-24 24:00"


def test_unknown_execution_is_one_line(tmp_path, capsys):
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["status", "no-such-execution", "--ledger", ledger]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no execution 'no-such-execution'") and err.count("\n") == 1


def test_a_ledger_that_cannot_be_opened_is_one_line(tmp_path, capsys):
    assert main(["status", "--ledger", "sqlite:////proc/no/such/dir/ledger.db"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open the ledger sqlite:////proc/no/such/dir/ledger.db")


def test_an_unexpected_error_is_one_line_and_a_debug_log(tmp_path, monkeypatch, capsys):
    import cutover.cli

    def broken(_args):  # a bug cannot be produced on demand, so one is planted
        raise ZeroDivisionError("division by zero")

    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path))
    monkeypatch.setattr(cutover.cli, "cmd_status", broken)
    assert main(["status"]) == 70
    err = capsys.readouterr().err
    assert (
        err.startswith("internal error: ZeroDivisionError") and str(tmp_path / "debug.log") in err
    )
    assert "Traceback" in (tmp_path / "debug.log").read_text()
