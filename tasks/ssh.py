"""Commands over SSH: run one (`ssh.run`) or check one's result (`ssh`).

Host keys must already be in the endpoint's known_hosts (see tasks._ssh).
Commands are not idempotent by nature: a runbook's command should be safe to
run twice (a re-run after a crash repeats it), e.g. `systemctl start`, not
`counter += 1`.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from cutover.errors import StepError
from cutover.steps import Evidence, StepContext, Verdict, action, check
from cutover.types import Duration, Params, TargetName
from tasks._ssh import CommandResult, connect, run, tail


class RunCommand(Params):
    target: TargetName = Field(description="Host to run the command on (its ssh endpoint)")
    command: str = Field(min_length=1, description="Shell command, run by the remote shell")
    expect_exit: int | list[int] = Field(0, description="Exit status(es) that count as success")
    timeout: Duration = Field(
        timedelta(minutes=5), description="Give up when the command prints nothing for this long"
    )


class CommandCheck(Params):
    target: TargetName = Field(description="Host to run the command on (its ssh endpoint)")
    command: str = Field(min_length=1, description="Read-only shell command")
    exit: int = Field(0, description="Exit status the command must return")
    contains: str | None = Field(None, description="Text its standard output must contain")
    timeout: Duration = Field(
        timedelta(minutes=1), description="Give up when the command prints nothing for this long"
    )


def _run(ctx: StepContext, target: str, command: str, timeout: timedelta) -> CommandResult:
    with connect(ctx, target, "ssh") as client:
        return run(client, command, timeout.total_seconds())


def _evidence(target: str, command: str, result: CommandResult) -> Evidence:
    return {
        "target": target,
        "command": command,
        "exit": result.exit,
        "stdout": tail(result.stdout),
        "stderr": tail(result.stderr),
    }


@action("ssh.run")
def run_command(params: RunCommand, ctx: StepContext) -> Evidence:
    """Run a command over SSH; fails unless it exits with `expect_exit`."""
    result = _run(ctx, params.target, params.command, params.timeout)
    wanted = [params.expect_exit] if isinstance(params.expect_exit, int) else params.expect_exit
    evidence = _evidence(params.target, params.command, result)
    if result.exit not in wanted:
        last = result.stderr.strip().splitlines()[-1:] or result.stdout.strip().splitlines()[-1:]
        raise StepError(
            f"{params.command!r} on {params.target} exited {result.exit}, expected "
            f"{' or '.join(map(str, wanted))}" + (f": {last[0][:200]}" if last else ""),
            evidence=evidence,
        )
    return evidence


@check("ssh")
def command_check(params: CommandCheck, ctx: StepContext) -> Verdict:
    """Passes when the command exits with `exit` and its output contains `contains`."""
    result = _run(ctx, params.target, params.command, params.timeout)
    observed = {"exit": result.exit, "stdout": tail(result.stdout, 500)}
    expected: dict[str, object] = {"exit": params.exit}
    if params.contains is not None:
        expected["contains"] = params.contains
    where = f"{params.command!r} on {params.target}"
    if result.exit != params.exit:
        return Verdict(False, f"{where} exited {result.exit}", observed, expected)
    if params.contains is not None and params.contains not in result.stdout:
        return Verdict(False, f"{where}: output lacks {params.contains!r}", observed, expected)
    return Verdict(True, f"{where} exited {result.exit}", observed, expected)
