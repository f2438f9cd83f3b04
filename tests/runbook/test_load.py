"""Loading runbooks and profiles: what a good file becomes, and how problems read."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
import pytest

from cutover.errors import RunbookError
from cutover.load import load_profile, load_runbook
from cutover.profile import Profile
from cutover.runbook import OnFailure, Runbook
from cutover.steps import Registry
from cutover.times import FORMS, TimeProblem, parse_at, parse_wall
from cutover.yamlmap import parse_yaml

HERE = Path(__file__).parent
SHANGHAI = "Asia/Shanghai"


@pytest.fixture(scope="module")
def good(contract_registry: Registry, profile: Profile) -> Runbook:
    return load_runbook(HERE / "good.yaml", profile, contract_registry)


def step(runbook: Runbook, step_id: str):  # noqa: ANN201 (a Step)
    return next(s for _, s in runbook.steps() if s.id == step_id)


def problems(tmp_path: Path, text: str, registry: Registry, profile: Profile | None) -> list[str]:
    path = tmp_path / "runbook.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RunbookError) as info:
        load_runbook(path, profile, registry)
    return [f"{p.line}:{p.column}: {p.message}" for p in info.value.problems]


# --- a good runbook -------------------------------------------------------------


def test_good_runbook_loads(good: Runbook) -> None:
    assert good.name == "shanxi-test"
    assert good.timezone == SHANGHAI
    assert [p.id for p in good.phases] == ["shutdown", "freeze", "restore"]
    assert good.source.endswith("good.yaml")
    assert set(good.teams) == {"core-ops", "channel-ops", "data-team"}
    stop = step(good, "stop-collection-channels")
    assert stop.action is not None and stop.action.type == "channels.stop"
    assert stop.action.params.business == ["collection", "account"]
    assert stop.gates[0].check == "channels.state"
    assert stop.after == ("announce",)
    assert stop.line == 23


def test_good_runbook_loads_with_the_step_library(
    real_registry: Registry, profile: Profile
) -> None:
    runbook = load_runbook(HERE / "good.yaml", profile, real_registry)
    assert len(runbook.steps()) == 9


def test_without_a_profile_targets_are_not_checked(contract_registry: Registry) -> None:
    runbook = load_runbook(HERE / "broken" / "23-unknown-target.yaml", None, contract_registry)
    assert step(runbook, "stop-channels").action.params.target == "old-sytem"


def test_end_of_day_24_00_is_next_midnight(good: Runbook) -> None:
    freeze = step(good, "freeze-data")
    assert freeze.at.text == "2023-11-24 24:00"
    assert freeze.at.absolute == pendulum.datetime(2023, 11, 25, tz=SHANGHAI)
    assert parse_wall("2023-11-30 24:00", SHANGHAI) == pendulum.datetime(2023, 12, 1, tz=SHANGHAI)
    assert parse_wall("2023-12-31 24:00", "UTC") == pendulum.datetime(2024, 1, 1, tz="UTC")


def test_anchors_and_offsets(good: Runbook) -> None:
    assert good.anchors == {"restore-day": pendulum.datetime(2023, 12, 1, tz=SHANGHAI)}
    core = step(good, "restore-core").at
    assert (core.anchor, core.offset) == ("restore-day", timedelta(hours=8))
    online = step(good, "restore-online").at
    assert (online.anchor, online.offset) == ("restore-day", timedelta(hours=13))


@pytest.mark.parametrize(
    ("text", "anchor", "offset"),
    [
        ("go-live", "go-live", timedelta(0)),
        ("go-live+8h30m", "go-live", timedelta(hours=8, minutes=30)),
        ("go-live + 90s", "go-live", timedelta(seconds=90)),
        ("go-live-2h", "go-live", timedelta(hours=-2)),
        ("go-live 08:30", "go-live", timedelta(hours=8, minutes=30)),
        ("go-live+1d 08:00", "go-live", timedelta(days=1, hours=8)),
        ("go-live-1d", "go-live", timedelta(days=-1)),
        ("go", "go", timedelta(0)),
    ],
)
def test_time_forms(text: str, anchor: str, offset: timedelta) -> None:
    midnight = pendulum.datetime(2021, 3, 18, tz=SHANGHAI)
    spec = parse_at(text, SHANGHAI, {"go-live": midnight, "go": midnight})
    assert (spec.anchor, spec.offset, spec.text) == (anchor, offset, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2023-11-31 24:00", "2023-11-31 is not a date (November has 30 days)"),
        ("2024-02-30 08:00", "2024-02-30 is not a date (February 2024 has 29 days)"),
        ("2023-13-01 08:00", "2023-13-01 is not a date (months run 01-12)"),
        ("2023-11-20 18:60", "18:60 is not a time; minutes and seconds run 00-59"),
        (
            "2023-11-24 24:30",
            "24:30 is not a time; hour 24 is only allowed as 24:00 (the end of the day)",
        ),
        (
            "2023-11-20 25:00",
            "25:00 is not a time; hours run 00-23, and 24:00 means the end of the day",
        ),
        (
            "tomorrow at noon",
            f"'tomorrow at noon' is not a time; write {FORMS}",
        ),
        (
            "go-live+soon",
            f"'go-live+soon' is not a time; write {FORMS}",
        ),
    ],
)
def test_impossible_times(text: str, message: str) -> None:
    with pytest.raises(TimeProblem) as info:
        parse_at(text, SHANGHAI, {"go-live": None})
    assert str(info.value) == message


def test_shorthand_on_failure(good: Runbook) -> None:
    assert step(good, "check-in-flight").on_failure == OnFailure(policy="ask")
    assert step(good, "stop-systems").on_failure.policy == "rollback"
    assert step(good, "announce").on_failure == OnFailure()  # halt by default
    retry = step(good, "stop-collection-channels").on_failure
    assert (retry.policy, retry.attempts, retry.delay, retry.then) == (
        "retry",
        3,
        timedelta(minutes=5),
        "ask",
    )
    assert step(good, "restore-core").on_failure.runbook == "rollback.yaml"
    # A person asked to carry on past a failure has 30 minutes (the Qingyuan plan's limit).
    assert step(good, "check-in-flight").on_failure.decide_within == timedelta(minutes=30)


def test_ask_deadline_is_a_duration(tmp_path: Path, contract_registry: Registry) -> None:
    text = (
        Path(__file__)
        .with_name("good.yaml")
        .read_text(encoding="utf-8")
        .replace("on_failure: ask", "on_failure: {policy: ask, decide_within: soon}", 1)
    )
    (tmp_path / "rollback.yaml").write_text(
        Path(__file__).with_name("rollback.yaml").read_text(encoding="utf-8")
    )
    [line] = problems(tmp_path, text, contract_registry, None)
    assert line.endswith("'soon' is not a duration; write it like 30s, 5m, 2h, 1d or 1h30m")


def test_unquoted_yaml_times_stay_text() -> None:
    # YAML 1.1 reads 18:00 as the base-60 integer 1080 and 2023-11-20 as a date.
    doc = parse_yaml("a: 18:00\nb: 2023-11-20\nc: 2023-11-20 18:00:00\nd: 1800\n", "x.yaml")
    assert doc.data == {"a": "18:00", "b": "2023-11-20", "c": "2023-11-20 18:00:00", "d": 1800}
    assert doc.values[("c",)] == (3, 4) and doc.keys[("c",)] == (3, 1)


# --- problems -----------------------------------------------------------------------

MANY_MISTAKES = """\
name: Many_Mistakes
title: Every problem is reported, not just the first
timezone: Asia/Shanghai
teams: {core-ops: {name: Core operations, phone: "123"}}
phases:
  - id: shutdown
    title: Stop
    steps:
      - id: stop
        title: Stop the channels
        owner: ops
        at: "2023-11-31 18:00"
        action: {type: channels.stop, target: old-system, channels: [all], token: abc}
        on_failure: {policy: retry, attempts: 0}
      - id: check
        title: Check
        owner: core-ops
        after: [stop, nothing]
        gates:
          - {check: http, target: nowhere, path: /health, status: ok}
"""


def test_every_problem_is_reported(
    tmp_path: Path, contract_registry: Registry, profile: Profile
) -> None:
    found = problems(tmp_path, MANY_MISTAKES, contract_registry, profile)
    assert found == [
        "1:7: name: 'Many_Mistakes' is not an id; use lower-case letters, digits and '-'",
        "4:43: teams.core-ops.phone: unknown key 'phone'; allowed: name, contact, escalation",
        "11:16: phases[0].steps[0].owner: owner 'ops' is not a team of this runbook; "
        "teams: core-ops",
        "12:13: phases[0].steps[0].at: 2023-11-31 is not a date (November has 30 days)",
        "13:83: phases[0].steps[0].action.token: a secret written in plain text; "
        "write a secret reference such as {secret: env:NAME}",
        "14:47: phases[0].steps[0].on_failure.attempts: "
        "input should be greater than or equal to 1 (got 0)",
        "18:23: phases[0].steps[1].after[1]: 'nothing' is not a step of this runbook; "
        "after names the ids of steps above",
        "20:35: phases[0].steps[1].gates[0].target: target 'nowhere' is not in profile 'test'; "
        "targets: new-system, notify-hub, old-system, receiver-db, tax-drop, tax-ftp",
        "20:67: phases[0].steps[1].gates[0].status: input should be a valid integer, unable to "
        "parse string as an integer (got 'ok') or input should be a valid list (got 'ok')",
    ]


def test_missing_file(contract_registry: Registry) -> None:
    with pytest.raises(RunbookError) as info:
        load_runbook(Path("no/such/runbook.yaml"), None, contract_registry)
    assert str(info.value) == "no/such/runbook.yaml:1:1: file not found"


def test_empty_file(tmp_path: Path, contract_registry: Registry) -> None:
    found = problems(tmp_path, "# nothing yet\n", contract_registry, None)
    assert found == ["1:1: a runbook is a mapping with name, title, timezone and phases"]


# --- profiles -----------------------------------------------------------------------


def test_profile_loads(profile: Profile) -> None:
    assert sorted(profile.targets) == [
        "new-system",
        "notify-hub",
        "old-system",
        "receiver-db",
        "tax-drop",
        "tax-ftp",
    ]
    assert profile.targets["new-system"].database.password.secret == "env:NEW_DB_PASSWORD"
    assert profile.source == HERE / "profile.yaml"


def test_profile_expands_variables() -> None:
    path = HERE / "profile.yaml"
    assert load_profile(path, environ={}).workdir == ".work"
    assert load_profile(path, environ={"CUTOVER_WORKDIR": "/srv/cutover"}).workdir == "/srv/cutover"
    assert load_profile(path, environ={"CUTOVER_WORKDIR": ""}).workdir == ".work"


PROFILE = """\
name: broken
workdir: ${WORKDIR}/runs and $$HOME
targets:
  old-system:
    http: {url: "http://${HOST:-127.0.0.1}:8080", token: "${OLD_TOKEN}"}
    database: {url: "sqlite:///old.db", password: hunter2}
    ssh: {host: h, username: u, known_hosts: k, pasword: {secret: env:X}}
"""


def test_profile_problems(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE, encoding="utf-8")
    with pytest.raises(RunbookError) as info:
        load_profile(path, environ={})
    assert [f"{p.line}:{p.column}: {p.message}" for p in info.value.problems] == [
        "2:10: workdir: environment variable WORKDIR is not set; "
        "set it, or write ${WORKDIR:-default}",
        "5:58: targets.old-system.http.token: a secret written in plain text; "
        "write a secret reference such as {secret: env:OLD_TOKEN}",
        "6:51: targets.old-system.database.password: a secret written in plain text; "
        "write a secret reference such as {secret: env:NAME}",
        "7:49: targets.old-system.ssh.pasword: unknown key 'pasword'; did you mean 'password'? "
        "allowed: host, port, username, known_hosts, key_file, password, root, timeout",
    ]


def test_profile_escapes_dollar(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text("name: p\nworkdir: $$HOME/${SUB:-runs}\ntargets: {}\n", encoding="utf-8")
    assert load_profile(path, environ={}).workdir == "$HOME/runs"
