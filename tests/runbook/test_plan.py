"""The plan: absolute times, execution order, untimed steps, anchor overrides, views."""

from __future__ import annotations

import json
from pathlib import Path

import pendulum
import pytest

from cutover.errors import PlanError
from cutover.load import load_runbook
from cutover.plan import Plan, build_plan
from cutover.profile import Profile
from cutover.runbook import Runbook
from cutover.steps import Registry
from cutover.views import plan_json, plan_table

HERE = Path(__file__).parent
SHANGHAI = "Asia/Shanghai"


@pytest.fixture(scope="module")
def runbook(contract_registry: Registry, profile: Profile) -> Runbook:
    return load_runbook(HERE / "good.yaml", profile, contract_registry)


@pytest.fixture(scope="module")
def plan(runbook: Runbook) -> Plan:
    return build_plan(runbook)


def at(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz=SHANGHAI)


def load_text(tmp_path: Path, text: str, registry: Registry) -> Runbook:
    path = tmp_path / "runbook.yaml"
    path.write_text(text, encoding="utf-8")
    return load_runbook(path, None, registry)


def test_order_is_phases_then_time_then_file(plan: Plan) -> None:
    assert [(p.phase.id, p.id) for p in plan.steps] == [
        ("shutdown", "announce"),
        ("shutdown", "stop-collection-channels"),
        ("shutdown", "check-in-flight"),
        ("shutdown", "stop-systems"),
        ("freeze", "freeze-data"),
        ("freeze", "export"),
        # written online, core, jobs; run at 08:00, 13:00, 20:00
        ("restore", "restore-core"),
        ("restore", "restore-online"),
        ("restore", "restore-jobs"),
    ]
    assert [p.index for p in plan.steps] == list(range(9))


def test_absolute_times_in_the_runbook_zone(plan: Plan) -> None:
    times = {p.id: p.at for p in plan.steps}
    assert times["stop-collection-channels"] == at(2023, 11, 20, 18)
    assert times["freeze-data"] == at(2023, 11, 25)  # written 2023-11-24 24:00
    assert times["restore-core"] == at(2023, 12, 1, 8)
    assert times["restore-online"] == at(2023, 12, 1, 13)
    assert all(p.at.timezone_name == SHANGHAI for p in plan.steps)
    assert (plan.start, plan.end) == (at(2023, 11, 18, 9), at(2023, 12, 1, 20))


def test_untimed_steps_follow_their_dependencies(plan: Plan) -> None:
    check = plan.get("check-in-flight")
    assert (check.timed, check.at) == (False, at(2023, 11, 20, 18))
    export = plan.get("export")
    assert (export.timed, export.at) == (False, at(2023, 11, 25))
    assert [d.id for d in plan.dependencies("export")] == ["freeze-data"]
    assert all(p.timed for p in plan.steps if p.id not in ("check-in-flight", "export"))


UNTIMED = """\
name: untimed
title: Steps without times
timezone: Asia/Shanghai
anchors: {start: "2021-03-18 08:00"}
phases:
  - id: all
    title: All
    steps:
      - {id: first, title: First, owner: ops}
      - {id: second, title: Second, owner: ops, at: start+30m}
      - {id: third, title: Third, owner: ops}
      - {id: fourth, title: Fourth, owner: ops, after: [first]}
"""


def test_untimed_steps_without_dependencies(tmp_path: Path, contract_registry: Registry) -> None:
    runbook = load_text(
        tmp_path,
        UNTIMED.replace("phases:", "teams: {ops: {name: Ops}}\nphases:"),
        contract_registry,
    )
    times = {p.id: (p.at, p.timed) for p in build_plan(runbook).steps}
    assert times == {
        "first": (at(2021, 3, 18, 8, 30), False),  # the earliest time in the runbook
        "second": (at(2021, 3, 18, 8, 30), True),
        "third": (at(2021, 3, 18, 8, 30), False),  # the step above it
        "fourth": (at(2021, 3, 18, 8, 30), False),  # its dependency
    }


def test_anchor_override_moves_anchored_steps(runbook: Runbook) -> None:
    moved = build_plan(runbook, anchors={"restore-day": at(2023, 12, 2)})
    assert moved.get("restore-core").at == at(2023, 12, 2, 8)
    assert moved.get("freeze-data").at == at(2023, 11, 25)  # absolute times stay
    assert moved.anchors == {"restore-day": at(2023, 12, 2)}


def test_anchor_override_in_another_zone_or_naive(runbook: Runbook) -> None:
    utc = build_plan(runbook, anchors={"restore-day": pendulum.datetime(2023, 12, 1, 16, tz="UTC")})
    assert utc.get("restore-core").at == at(2023, 12, 2, 8)
    assert utc.get("restore-core").at.timezone_name == SHANGHAI
    naive = build_plan(runbook, anchors={"restore-day": pendulum.naive(2023, 12, 2)})
    assert naive.get("restore-core").at == at(2023, 12, 2, 8)


def test_rollback_runbook_anchors_on_its_start(tmp_path: Path, contract_registry: Registry) -> None:
    text = UNTIMED.replace("at: start+30m", "after: [first]").replace(
        "phases:", "teams: {ops: {name: Ops}}\nphases:"
    )
    runbook = load_text(tmp_path, text, contract_registry)
    plan = build_plan(runbook, anchors={"start": at(2023, 11, 26, 3)})
    assert {p.at for p in plan.steps} == {at(2023, 11, 26, 3)}


def test_plan_errors(runbook: Runbook, tmp_path: Path, contract_registry: Registry) -> None:
    with pytest.raises(PlanError, match="has no anchor go-live; declared anchors: restore-day"):
        build_plan(runbook, anchors={"go-live": at(2023, 12, 1)})
    with pytest.raises(PlanError, match="is not a date and time"):
        build_plan(runbook, anchors={"restore-day": "2023-12-01"})  # type: ignore[dict-item]
    with pytest.raises(PlanError, match="restore-jobs .* would run before stop-systems"):
        moved = runbook.model_copy()
        text = (HERE / "good.yaml").read_text(encoding="utf-8")
        text = text.replace("after: [restore-core]", "after: [restore-core, stop-systems]")
        (tmp_path / "rollback.yaml").write_text("", encoding="utf-8")
        moved = load_text(tmp_path, text, contract_registry)
        build_plan(moved, anchors={"restore-day": at(2023, 11, 1)})


def test_no_time_at_all_cannot_be_planned(tmp_path: Path, contract_registry: Registry) -> None:
    text = UNTIMED.replace('anchors: {start: "2021-03-18 08:00"}\n', "").replace(
        "at: start+30m", "after: [first]"
    )
    runbook = load_text(
        tmp_path, text.replace("phases:", "teams: {ops: {name: Ops}}\nphases:"), contract_registry
    )
    with pytest.raises(PlanError, match="has no timed step and no anchor"):
        build_plan(runbook)


def test_plan_json_shape(plan: Plan) -> None:
    data = plan_json(plan)
    assert json.loads(json.dumps(data)) == data  # plain JSON all the way down
    assert set(data) == {"version", "runbook", "anchors", "start", "end", "phases", "steps"}
    assert data["runbook"] == {
        "name": "shanxi-test",
        "title": "Shanxi social-insurance shutdown upgrade (test copy)",
        "timezone": SHANGHAI,
        "source": str(HERE / "good.yaml"),
        "rollback": "rollback.yaml",
    }
    assert data["anchors"] == {"restore-day": "2023-12-01T00:00:00+08:00"}
    assert [s["id"] for s in data["steps"]] == [p.id for p in plan.steps]
    stop = data["steps"][1]
    assert set(stop) == {
        "index",
        "phase",
        "id",
        "title",
        "owner",
        "at",
        "at_text",
        "timed",
        "after",
        "action",
        "gates",
        "on_failure",
        "notes",
        "line",
    }
    assert stop["at"] == "2023-11-20T18:00:00+08:00"
    assert stop["action"] == {
        "type": "channels.stop",
        "params": {
            "target": "old-system",
            "channels": ["all"],
            "business": ["collection", "account"],
        },
    }
    assert stop["gates"][0]["check"] == "channels.state"
    assert stop["on_failure"] == {
        "policy": "retry",
        "attempts": 3,
        "delay": "5m",
        "then": "ask",
        "runbook": None,
        "decide_within": "30m",
    }
    core = next(s for s in data["steps"] if s["id"] == "restore-core")
    assert core["gates"][0]["params"]["json"] == {"status": "ok"}  # written name, not json_
    assert data["steps"][5]["timed"] is False and data["steps"][5]["at_text"] is None


def test_plan_table(plan: Plan) -> None:
    table = plan_table(plan)
    lines = table.splitlines()
    assert lines[0] == "shanxi-test: Shanxi social-insurance shutdown upgrade (test copy)"
    assert "anchors: restore-day = Fri 2023-12-01 00:00" in lines
    header = next(line for line in lines if line.lstrip().startswith("#"))
    assert header.split() == ["#", "when", "phase", "step", "owner", "gates", "on", "failure"]
    freeze = next(line for line in lines if "freeze-data" in line)
    assert "Sat 2023-11-25 00:00 (end of Fri 11-24)" in freeze
    check = next(line for line in lines if "check-in-flight" in line)
    assert "~ Mon 2023-11-20 18:00" in check and check.rstrip().endswith("ask")
    stop = next(line for line in lines if "stop-collection-channels" in line)
    assert "channels.state(old-system)" in stop and stop.endswith("retry 3x/5m then ask")
    systems = next(line for line in lines if "stop-systems" in line)
    assert systems.endswith("rollback -> rollback.yaml")
    # Fixed width: every row's "when" column starts where the header's does.
    start, first = header.index("when"), lines.index(header) + 2
    rows = lines[first : first + len(plan.steps)]
    assert all(row[start : start + 2] in ("  ", "~ ") for row in rows)
    assert all(row[start + 2 : start + 6] in ("Sat ", "Mon ", "Thu ", "Fri ") for row in rows)
    assert table.endswith("~ not timed: starts as soon as the steps it follows are done")
