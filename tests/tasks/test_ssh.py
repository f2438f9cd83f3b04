"""ssh.run and the `ssh` check against the sandbox's paramiko SSH server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cutover.errors import ConnectError, StepError
from cutover.steps import StepContext
from sandbox.keys import ensure_ed25519
from sandbox.runtime import Sandbox
from tasks.ssh import CommandCheck, RunCommand, command_check, run_command

MakeContext = Callable[..., StepContext]


def targets_with(sb: Sandbox, **ssh: Any) -> dict[str, Any]:
    targets = sb.profile()["targets"]
    targets["new-system"]["ssh"].update(ssh)
    return targets


@pytest.fixture
def ctx(sandbox: Sandbox, make_context: MakeContext) -> StepContext:
    return make_context(sandbox.profile()["targets"])


def test_run_reports_output_and_exit(ctx: StepContext) -> None:
    evidence = run_command(RunCommand(target="new-system", command="echo hello; ls"), ctx)
    assert evidence["exit"] == 0
    assert evidence["stdout"].startswith("hello\n")
    assert "drop" in evidence["stdout"]  # runs in the sandbox directory


def test_run_fails_on_unexpected_exit(ctx: StepContext) -> None:
    params = RunCommand(target="new-system", command="echo nearly >&2; exit 3")
    with pytest.raises(StepError, match="exited 3, expected 0: nearly") as caught:
        run_command(params, ctx)
    assert caught.value.evidence["exit"] == 3
    assert caught.value.evidence["stderr"] == "nearly\n"

    allowed = params.model_copy(update={"expect_exit": [0, 3]})
    assert run_command(allowed, ctx)["exit"] == 3


def test_run_drains_a_flood_on_stderr(ctx: StepContext) -> None:
    # More than paramiko's 2 MiB window on stderr alone: must not stall.
    params = RunCommand(target="new-system", command="head -c 3000000 /dev/zero >&2; echo done")
    evidence = run_command(params, ctx)
    assert evidence["stdout"] == "done\n"
    assert len(evidence["stderr"]) < 2200


def test_check(ctx: StepContext) -> None:
    ok = CommandCheck(target="new-system", command="ls drop", contains="inbox")
    assert command_check(ok, ctx).passed
    missing = command_check(ok.model_copy(update={"contains": "nothing-here"}), ctx)
    assert not missing.passed and "output lacks 'nothing-here'" in missing.summary
    failing = command_check(CommandCheck(target="new-system", command="false"), ctx)
    assert not failing.passed and failing.observed["exit"] == 1


def test_unknown_host_key_is_refused(
    sandbox: Sandbox, make_context: MakeContext, tmp_path: Path
) -> None:
    # A known_hosts that knows another host only: this server's key is unknown.
    other = (
        (sandbox.dir / "known_hosts")
        .read_text()
        .replace(f"[127.0.0.1]:{sandbox.sftp_port}", "[127.0.0.1]:1")
    )
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(other)
    ctx = make_context(targets_with(sandbox, known_hosts=str(known_hosts)))

    with pytest.raises(ConnectError) as caught:
        run_command(RunCommand(target="new-system", command="touch should-not-exist"), ctx)

    assert str(caught.value) == (
        f"host key for [127.0.0.1]:{sandbox.sftp_port} is not in {known_hosts}; "
        "add it after verifying its fingerprint"
    )
    assert caught.value.evidence["offered"].startswith("SHA256:")
    assert known_hosts.read_text() == other  # nothing was added
    assert not (sandbox.dir / "should-not-exist").exists()
    # A check cannot reach the host either: ConnectError, which fails the gate.
    with pytest.raises(ConnectError, match="is not in"):
        command_check(CommandCheck(target="new-system", command="true"), ctx)


def test_changed_host_key_is_refused(
    sandbox: Sandbox, make_context: MakeContext, tmp_path: Path
) -> None:
    impostor = ensure_ed25519(tmp_path / "impostor")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{sandbox.sftp_port} {impostor.get_name()} {impostor.get_base64()}\n"
    )
    ctx = make_context(targets_with(sandbox, known_hosts=str(known_hosts)))
    with pytest.raises(ConnectError, match="does not match"):
        run_command(RunCommand(target="new-system", command="true"), ctx)


def test_missing_known_hosts_and_wrong_key(
    sandbox: Sandbox, make_context: MakeContext, tmp_path: Path
) -> None:
    ctx = make_context(targets_with(sandbox, known_hosts=str(tmp_path / "absent")))
    with pytest.raises(ConnectError, match="cannot read known_hosts"):
        run_command(RunCommand(target="new-system", command="true"), ctx)

    ensure_ed25519(tmp_path / "stranger")
    ctx = make_context(targets_with(sandbox, key_file=str(tmp_path / "stranger")))
    with pytest.raises(ConnectError, match="authentication failed"):
        run_command(RunCommand(target="new-system", command="true"), ctx)
