"""Load and check runbooks and environment profiles.

Both loaders read YAML with positions (cutover.yamlmap), check everything they
can, and raise one RunbookError listing every problem as
`file:line:col: path: what is wrong; what is allowed`. They never stop at the
first problem and never let a traceback reach the user. The runbook format is
described in docs/runbook-format.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pendulum import DateTime
from pydantic import BaseModel, ValidationError

from cutover.plan import earliest_times
from cutover.errors import RunbookError
from cutover.profile import Profile
from cutover.runbook import Action, Gate, OnFailure, Runbook, TimeSpec
from cutover.steps import Kind, Registry, StepType
from cutover.times import TimeProblem, parse_at, parse_wall, resolve, show, zone_problem
from cutover.types import Params, TargetRef
from cutover.yamlmap import (
    INTERNAL_FIELDS,
    DataPath,
    Doc,
    Problems,
    closest,
    expand_env,
    plain_secrets,
    read_yaml,
    suggest,
)

RUNBOOK_KEYS = ("name", "title", "timezone", "anchors", "rollback", "teams", "phases")
PHASE_KEYS = ("id", "title", "steps")
STEP_KEYS = ("id", "title", "owner", "at", "after", "action", "gates", "on_failure", "notes")
OPTIONAL_STEP_KEYS = ("at", "after", "action", "gates", "on_failure", "notes")
ON_FAILURE_KEYS = tuple(OnFailure.model_fields)
POLICIES = ("halt", "ask", "retry", "rollback")
ANCHOR_NAME = r"^[a-z][a-z0-9-]*$"  # a letter first, so an anchor never reads as a date


def load_profile(path: Path, environ: Mapping[str, str] | None = None) -> Profile:
    """Read an environment profile, expanding ${VAR} and ${VAR:-default} in its strings."""
    doc = read_yaml(path)
    out = Problems(doc)
    if not isinstance(doc.data, dict):
        out.add((), "a profile is a mapping with name and targets; see docs/runbook-format.md")
        out.raise_if_any()
    for where, message in plain_secrets(doc):
        out.add(where, message)
    for where, message in expand_env(doc, os.environ if environ is None else environ):
        out.add(where, message)
    body = _known_keys(out, (), doc.data, [k for k in Profile.model_fields if k != "source"])
    try:
        profile = Profile.model_validate({**body, "source": path})
    except ValidationError as exc:
        out.validation(exc, (), body, Profile)
        raise RunbookError(out.items) from None
    out.raise_if_any()
    return profile


def load_runbook(path: Path, profile: Profile | None, registry: Registry) -> Runbook:
    """Read and check a runbook; targets are checked against `profile` when given."""
    doc = read_yaml(path)
    loader = _RunbookLoader(doc, registry, profile, path.parent)
    runbook = loader.load()
    loader.out.raise_if_any()
    assert runbook is not None  # no problems means the model was built
    return runbook


@dataclass
class _StepRecord:
    """What the cross-step checks need of one step, kept even if the step is invalid."""

    path: DataPath
    index: int
    id: str | None
    after: list[str]
    at: TimeSpec | None = None


def _known_keys(out: Problems, path: DataPath, data: Any, allowed: Any) -> dict[str, Any]:
    """`data` without its unknown keys; each unknown key is a problem."""
    if not isinstance(data, dict):
        return data
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            out.add(path + (key,), f"unknown key '{key}'; " + suggest(key, allowed), key=True)
    return {k: v for k, v in data.items() if k in allowed}


class _RunbookLoader:
    def __init__(self, doc: Doc, registry: Registry, profile: Profile | None, base: Path) -> None:
        self.doc, self.registry, self.profile, self.base = doc, registry, profile, base
        self.out = Problems(doc)
        self.tz = "UTC"  # stand-in while the runbook's own zone is unknown
        self.anchors: dict[str, DateTime | None] = {}
        self.teams: list[str] | None = None
        self.has_rollback = False
        self.records: list[_StepRecord] = []
        self.first_line: dict[tuple[str, str], int] = {}  # (kind, id) -> line, for duplicates

    def load(self) -> Runbook | None:
        if not isinstance(self.doc.data, dict):
            self.out.add((), "a runbook is a mapping with name, title, timezone and phases")
            return None
        for where, message in plain_secrets(self.doc):
            self.out.add(where, message)
        body = _known_keys(self.out, (), self.doc.data, RUNBOOK_KEYS)
        self._timezone(body)
        body["anchors"] = self._anchors(body.get("anchors"))
        self._rollback(body.get("rollback"))
        teams = body.get("teams", {})
        # None: the teams are unreadable (reported by pydantic), so owners are not checked.
        self.teams = sorted(teams) if isinstance(teams, dict) else None
        body["phases"] = self._phases(body.get("phases"))
        self._check_dependencies()
        self._check_times()
        try:
            return Runbook.model_validate({**body, "source": self.doc.file})
        except ValidationError as exc:
            self.out.validation(exc, (), body, Runbook)
            return None

    # --- top level ----------------------------------------------------------

    def _timezone(self, body: dict[str, Any]) -> None:
        zone = body.get("timezone")
        if zone is None:
            message = "missing required key 'timezone'; write an IANA time zone such as Asia/Shanghai"
            self.out.add(("timezone",), message)
        elif isinstance(zone, str) and (problem := zone_problem(zone)):
            self.out.add(("timezone",), problem)
        elif isinstance(zone, str):
            self.tz = zone

    def _anchors(self, raw: Any) -> Any:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.out.add(("anchors",), "anchors map names to times, e.g. {restore-day: 2023-12-01 00:00}")
            return {}
        good: dict[str, DateTime] = {}
        for name, text in raw.items():
            self.anchors[name] = None
            if not _matches(ANCHOR_NAME, name):
                message = f"'{name}' is not an anchor name; use lower-case letters, digits and '-', starting with a letter"
                self.out.add(("anchors", name), message, key=True)
                continue
            try:
                good[name] = self.anchors[name] = parse_wall(str(text), self.tz)
            except TimeProblem as exc:
                self.out.add(("anchors", name), str(exc))
        return good

    def _rollback(self, ref: Any) -> None:
        if isinstance(ref, str):
            self.has_rollback = True
            self._file_exists(("rollback",), ref)

    def _file_exists(self, path: DataPath, ref: str) -> None:
        if not (self.base / ref).is_file():
            self.out.add(
                path, f"rollback runbook '{ref}' does not exist; name a file relative to this runbook"
            )

    # --- phases and steps ---------------------------------------------------

    def _phases(self, raw: Any) -> Any:
        if not isinstance(raw, list):
            return raw  # pydantic reports what it should be
        if not raw:
            self.out.add(("phases",), "a runbook needs at least one phase")
        phases = []
        for i, phase in enumerate(raw):
            path: DataPath = ("phases", i)
            body = _known_keys(self.out, path, phase, PHASE_KEYS)
            if isinstance(body, dict):
                self._unique("phase", path, body.get("id"))
                body["steps"] = self._steps(path + ("steps",), body.get("steps"))
            phases.append(body)
        return phases

    def _steps(self, path: DataPath, raw: Any) -> Any:
        if not isinstance(raw, list):
            return raw
        if not raw:
            self.out.add(path, "a phase needs at least one step")
        return [self._step(path + (i,), step) for i, step in enumerate(raw)]

    def _unique(self, kind: str, path: DataPath, ident: Any) -> None:
        if not isinstance(ident, str):
            return
        line = self.doc.where(path + ("id",))[0]
        first = self.first_line.setdefault((kind, ident), line)
        if first != line:
            message = f"duplicate {kind} id '{ident}' (first on line {first}); {kind} ids must be unique"
            self.out.add(path + ("id",), message)

    def _step(self, path: DataPath, raw: Any) -> Any:
        body = _known_keys(self.out, path, raw, STEP_KEYS)
        if not isinstance(body, dict):
            return body
        self._unique("step", path, body.get("id"))
        ident = body.get("id") if isinstance(body.get("id"), str) else None
        record = _StepRecord(path, len(self.records), ident, self._after(path, body))
        self.records.append(record)
        body["after"] = record.after
        body["line"] = self.doc.where(path)[0]
        self._owner(path, body.get("owner"))
        record.at = self._at(path + ("at",), body.pop("at", None))
        if record.at is not None:
            body["at"] = record.at
        for key, build in (("action", self._action), ("gates", self._gates)):
            if body.get(key) is not None:
                body[key] = build(path + (key,), body[key])
        if body.get("on_failure") is not None:
            body["on_failure"] = self._on_failure(path + ("on_failure",), body["on_failure"])
        # An empty optional key (`notes:`) means the default, as if it were absent.
        return {k: v for k, v in body.items() if v is not None or k not in OPTIONAL_STEP_KEYS}

    def _after(self, path: DataPath, body: dict[str, Any]) -> list[str]:
        raw = body.get("after")
        if raw is None:
            return []
        if isinstance(raw, str):
            return [raw]  # `after: announce` for a single dependency
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return raw
        self.out.add(path + ("after",), "after is a list of step ids, e.g. [announce, stop-channels]")
        return []

    def _owner(self, path: DataPath, owner: Any) -> None:
        if not isinstance(owner, str) or self.teams is None or owner in self.teams:
            return
        if not self.teams:
            message = f"owner '{owner}' is not a team; this runbook declares no teams: add it under teams:"
        else:
            message = f"owner '{owner}' is not a team of this runbook; " + suggest(owner, self.teams, "teams")
        self.out.add(path + ("owner",), message)

    def _at(self, path: DataPath, raw: Any) -> TimeSpec | None:
        if raw is None:
            return None
        try:
            return parse_at(str(raw), self.tz, self.anchors)
        except TimeProblem as exc:
            self.out.add(path, str(exc))
            return None

    # --- actions, gates, failure policy -------------------------------------

    def _action(self, path: DataPath, raw: Any) -> Action | None:
        if not isinstance(raw, dict):
            self.out.add(path, "an action is a mapping such as {type: channels.stop, target: old-system}")
            return None
        step_type = self._step_type("action", "type", path, raw.get("type"))
        params = {k: v for k, v in raw.items() if k != "type"}
        model = step_type and self._params(path, step_type, params)
        return Action(type=step_type.name, params=model) if step_type and model else None

    def _gates(self, path: DataPath, raw: Any) -> tuple[Gate, ...]:
        if not isinstance(raw, list):
            self.out.add(path, "gates is a list of checks such as - {check: http, target: new-system}")
            return ()
        gates = []
        for i, gate in enumerate(raw):
            if not isinstance(gate, dict):
                self.out.add(path + (i,), "a gate is a mapping such as {check: http, target: new-system}")
                continue
            title = gate.get("title", "")
            if not isinstance(title, str):
                self.out.add(path + (i, "title"), "a gate's title is text")
            step_type = self._step_type("check", "check", path + (i,), gate.get("check"))
            params = {k: v for k, v in gate.items() if k not in ("check", "title")}
            model = step_type and self._params(path + (i,), step_type, params)
            if step_type and model and isinstance(title, str):
                gates.append(Gate(check=step_type.name, params=model, title=title))
        return tuple(gates)

    def _step_type(self, kind: Kind, key: str, path: DataPath, name: Any) -> StepType | None:
        known = self.registry.names(kind)
        if name is None:
            self.out.add(path + (key,), f"missing required key '{key}'; " + suggest("", known, f"known {kind} types"))
            return None
        found = self.registry.get(kind, name) if isinstance(name, str) else None
        if found is None:
            message = f"unknown {kind} type '{name}'; " + suggest(str(name), known, f"known {kind} types")
            self.out.add(path + (key,), message)
        return found

    def _params(self, path: DataPath, step_type: StepType, params: dict[str, Any]) -> Params | None:
        try:
            model = step_type.params.model_validate(params)
        except ValidationError as exc:
            self.out.validation(exc, path, params, step_type.params, noun="parameter", owner=step_type.name)
            return None
        if self.profile is not None:
            targets = sorted(self.profile.targets)
            for where, name in _target_values(model):
                if name not in self.profile.targets:
                    message = f"target '{name}' is not in profile '{self.profile.name}'; "
                    self.out.add(path + where, message + suggest(name, targets, "targets"))
        return model

    def _on_failure(self, path: DataPath, raw: Any) -> OnFailure | None:
        if isinstance(raw, str) and raw not in POLICIES:
            self.out.add(path, f"'{raw}' is not a failure policy; " + suggest(raw, POLICIES))
            return None
        if isinstance(raw, str):
            raw = {"policy": raw}  # shorthand: `on_failure: ask`
        elif not isinstance(raw, dict):
            self.out.add(path, "on_failure is halt, ask, retry, rollback or a mapping such as {policy: retry, attempts: 3}")
            return None
        raw = _known_keys(self.out, path, raw, ON_FAILURE_KEYS)
        try:
            policy = OnFailure.model_validate(raw)
        except ValidationError as exc:
            self.out.validation(exc, path, raw, OnFailure)
            return None
        if policy.runbook is not None:
            self._file_exists(path + ("runbook",), policy.runbook)
        rolls_back = "rollback" in (policy.policy, policy.then if policy.policy == "retry" else None)
        if rolls_back and policy.runbook is None and not self.has_rollback:
            self.out.add(
                path,
                "this policy rolls back but no rollback runbook is named; "
                "add rollback: FILE at the top of the runbook, or runbook: FILE here",
            )
        return policy

    # --- checks across steps ------------------------------------------------

    def _check_dependencies(self) -> None:
        by_id: dict[str, _StepRecord] = {}
        for record in self.records:
            if record.id is not None:
                by_id.setdefault(record.id, record)
        cycle_edges = self._report_cycles(by_id)
        for record in self.records:
            for i, dep in enumerate(record.after):
                where = self._after_path(record, i)
                target = by_id.get(dep)
                if target is None:
                    near = closest(dep, by_id)
                    hint = f"; did you mean '{near}'?" if near else "; after names the ids of steps above"
                    self.out.add(where, f"'{dep}' is not a step of this runbook{hint}")
                elif target.index > record.index and (record.id, dep) not in cycle_edges:
                    line = self.doc.where(target.path)[0]
                    self.out.add(
                        where,
                        f"'{dep}' comes later (line {line}); a step can only follow steps above it",
                    )

    def _after_path(self, record: _StepRecord, i: int) -> DataPath:
        path = record.path + ("after",)
        return path + (i,) if path + (i,) in self.doc.values else path

    def _report_cycles(self, by_id: dict[str, _StepRecord]) -> set[tuple[str | None, str]]:
        edges: set[tuple[str | None, str]] = set()
        for cycle in _cycles({r.id: [d for d in r.after if d in by_id] for r in by_id.values()}):
            first = min(cycle[:-1], key=lambda ident: by_id[ident].index)
            start = cycle.index(first)
            ordered = cycle[start:-1] + cycle[:start] + [first]
            edges.update(zip(ordered, ordered[1:], strict=False))
            record = by_id[first]
            where = self._after_path(record, record.after.index(ordered[1]))
            chain = ", which runs after ".join(ordered[1:]) if len(ordered) > 2 else "itself"
            message = f"dependency cycle: {first} runs after {chain}; remove one of these after: entries"
            self.out.add(where, message)
        return edges

    def _check_times(self) -> None:
        anchors = {name: at for name, at in self.anchors.items() if at is not None}
        fixed: dict[int, DateTime | None] = {}
        for record in self.records:
            usable = record.at is not None and (record.at.anchor is None or record.at.anchor in anchors)
            fixed[record.index] = resolve(record.at, anchors) if usable else None
        rows = [(r.id or f"#{r.index}", r.after, fixed[r.index]) for r in self.records]
        times = earliest_times(rows)
        ids = {r.id: r.index for r in self.records if r.id}
        for record in self.records:
            at = fixed[record.index]
            for dep in record.after:
                before = times.get(dep) if ids.get(dep, record.index) < record.index else None
                if at is not None and before is not None and at < before:
                    assert record.at is not None
                    self.out.add(
                        record.path + ("at",),
                        f"{show(at, record.at.text)} is before '{dep}' ({show(before)}), "
                        "which this step follows; move it later or drop the dependency",
                    )
                    break


def _cycles(graph: dict[str | None, list[str]]) -> list[list[str]]:
    """Each distinct cycle of a dependency graph, as [a, b, ..., a]."""
    found: dict[frozenset[str], list[str]] = {}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt]
                found.setdefault(frozenset(cycle), cycle)
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in graph:
        if node is not None and node not in state:
            visit(node, [node])
    return list(found.values())


def _matches(pattern: str, text: Any) -> bool:
    return isinstance(text, str) and re.match(pattern, text) is not None


def _has_target_ref(annotation: Any, metadata: list[Any]) -> bool:
    if any(isinstance(m, TargetRef) for m in metadata):
        return True
    return any(isinstance(a, TargetRef) or _has_target_ref(a, []) for a in get_args(annotation))


def _target_values(model: BaseModel, path: DataPath = ()) -> Iterator[tuple[DataPath, str]]:
    """(path, name) of every parameter typed TargetName, nested models included."""
    for name, info in type(model).model_fields.items():
        value, key = getattr(model, name), info.alias or name
        if _has_target_ref(info.annotation, info.metadata):
            if isinstance(value, str):
                yield path + (key,), value
            elif isinstance(value, list | tuple):
                yield from ((path + (key, i), v) for i, v in enumerate(value) if isinstance(v, str))
        elif isinstance(value, BaseModel):
            yield from _target_values(value, path + (key,))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _target_values(item, path + (key, i))

