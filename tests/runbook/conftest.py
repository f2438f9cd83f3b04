"""Fixtures for the runbook tests: the test profile and two step-type registries.

`contract_registry` holds the step types of docs/CONTRACTS.md section 1 with
their parameter models and no behaviour, so loading can be tested before (and
independently of) the step library. `real_registry` is the library itself;
`library_gaps` lists the contract names it does not register yet.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from cutover.load import load_profile
from cutover.profile import Profile
from cutover.steps import Kind, Registry, StepType
from cutover.types import Duration, Params, TargetName

HERE = Path(__file__).parent


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    where: str | None = None


class HttpCall(Params):
    target: TargetName
    method: str = "POST"
    path: str
    json_: dict[str, Any] | None = Field(None, alias="json")
    expect_status: list[int] = [200, 201, 202, 204]


class StopChannels(Params):
    target: TargetName
    channels: list[str]
    business: list[str] | None = None


class StartChannels(Params):
    target: TargetName
    channels: list[str]


class PublishNotice(Params):
    target: TargetName
    text: str
    until: str | None = None


class TargetOnly(Params):
    target: TargetName


class Tables(Params):
    target: TargetName
    tables: list[str] | None = None


class Checksum(Tables):
    save_as: str | None = None


class Query(Params):
    target: TargetName
    sql: str
    save_as: str | None = None


class Backup(Params):
    target: TargetName
    name: str


class Export(Params):
    target: TargetName
    batch: str
    tables: list[Table]


class Load(Params):
    target: TargetName
    batch: str
    replace: bool = True


class Put(Params):
    target: TargetName
    batch: str
    remote_dir: str


class Get(Params):
    target: TargetName
    remote_path: str
    local_name: str


class Release(Params):
    target: TargetName
    version: str


class SshRun(Params):
    target: TargetName
    command: str
    expect_exit: int = 0


class Notify(Params):
    target: TargetName
    to: list[str]
    subject: str
    body: str
    channel: str = "im"


class Approval(Params):
    question: str
    approvers: list[str]
    timeout: Duration
    on_timeout: Literal["go", "no-go"] = "no-go"


class Wait(Params):
    duration: Duration


class HttpCheck(Params):
    target: TargetName
    method: str = "GET"
    path: str
    status: int | list[int] = 200
    json_: dict[str, Any] | None = Field(None, alias="json")
    contains: str | None = None


class ChannelState(Params):
    target: TargetName
    channels: list[str]
    state: Literal["running", "stopped", "partial"]


class SqlCheck(Params):
    target: TargetName
    query: str
    equals: Any = None
    min: float | None = None
    max: float | None = None


class SshCheck(Params):
    target: TargetName
    command: str
    exit: int = 0
    contains: str | None = None


class Ack(Params):
    target: TargetName
    batch: str
    remote_dir: str = "outbox"
    timeout: Duration = timedelta(minutes=2)
    poll: Duration = timedelta(seconds=2)


class Counts(Params):
    source: TargetName | None = None
    destination: TargetName | None = None
    batch: str | None = None
    tables: list[Table]


class Checksums(Params):
    target: TargetName
    tables: list[str] | None = None
    baseline: str


class Manifest(Params):
    batch: str


ACTIONS: dict[str, type[Params]] = {
    "http.call": HttpCall,
    "channels.stop": StopChannels,
    "channels.start": StartChannels,
    "notice.publish": PublishNotice,
    "notice.clear": TargetOnly,
    "database.freeze": Tables,
    "database.unfreeze": Tables,
    "database.checksum": Checksum,
    "database.query": Query,
    "database.backup": Backup,
    "database.export": Export,
    "database.load": Load,
    "transfer.sftp_put": Put,
    "transfer.sftp_get": Get,
    "transfer.ftp_put": Put,
    "transfer.ftp_get": Get,
    "deploy.release": Release,
    "ssh.run": SshRun,
    "notify.send": Notify,
    "approval": Approval,
    "wait": Wait,
}

CHECKS: dict[str, type[Params]] = {
    "http": HttpCheck,
    "channels.state": ChannelState,
    "sql": SqlCheck,
    "ssh": SshCheck,
    "sftp.ack": Ack,
    "ftp.ack": Ack,
    "reconcile.counts": Counts,
    "reconcile.checksums": Checksums,
    "manifest.verify": Manifest,
}


def _unused(params: Any, ctx: Any) -> Any:
    raise AssertionError("contract step types are for loading only")


def contract_registry_() -> Registry:
    registry = Registry()
    for kind, types in (("action", ACTIONS), ("check", CHECKS)):
        for name, params in types.items():
            registry.add(StepType(name=name, kind=kind, params=params, fn=_unused))
    return registry


@pytest.fixture(scope="session")
def contract_registry() -> Registry:
    return contract_registry_()


@pytest.fixture(scope="session")
def real_registry() -> Registry:
    from cutover.steps import load_step_types

    try:
        return load_step_types()
    except Exception as exc:  # a half-written step library must not break these tests
        pytest.skip(f"the step library does not import yet: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="session")
def library_gaps(real_registry: Registry) -> list[str]:
    """Contract step types the real library does not register (yet)."""
    kinds: tuple[tuple[Kind, dict[str, type[Params]]], ...] = (
        ("action", ACTIONS),
        ("check", CHECKS),
    )
    return [f"{k} {n}" for k, names in kinds for n in names if real_registry.get(k, n) is None]


@pytest.fixture(scope="session")
def profile() -> Profile:
    return load_profile(HERE / "profile.yaml", environ={})
