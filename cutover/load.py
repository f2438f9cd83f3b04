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

from cutover.errors import Problem, RunbookError
from cutover.plan import dependency_problems, earliest_times, order_conflicts
from cutover.profile import Profile
from cutover.runbook import Action, Gate, OnFailure, Runbook, TimeSpec
from cutover.steps import Kind, Registry, StepType
from cutover.times import TimeProblem, parse_at, parse_wall, resolve, show, zone_problem
from cutover.types import Params, TargetRef
from cutover.yamlmap import (
    DataPath,
    Doc,
    Problems,
    expand_env,
    model_in,
    plain_secrets,
    read_yaml,
    suggest,
)

RUNBOOK_KEYS = ("name", "title", "timezone", "anchors", "rollback", "teams", "phases")
PHASE_KEYS = ("id", "title", "steps")
STEP_KEYS = ("id", "title", "owner", "at", "after", "action", "gates", "on_failure", "notes")
OPTIONAL_STEP_KEYS = ("at", "after", "action", "gates", "on_failure", "notes")
POLICIES = ("halt", "ask", "retry", "rollback")
ANCHOR_NAME = re.compile(r"^[a-z][a-z0-9-]*$")  # a letter first: never read as a date

# What to write instead, for values of the wrong shape.
SHAPES = {
    "anchors": "anchors map names to times, e.g. {restore-day: 2023-12-01 00:00}",
    "after": "after is a list of step ids, e.g. [announce, stop-channels]",
    "action": "an action is a mapping such as {type: channels.stop, target: old-system}",
    "gates": "gates is a list of checks such as - {check: http, target: new-system}",
    "gate": "a gate is a mapping such as {check: http, target: new-system}",
    "on_failure": "on_failure is halt, ask, retry, rollback or a mapping such as "
    "{policy: retry, attempts: 3, delay: 5m, then: rollback}",
}
NO_TIMEZONE = "missing required key 'timezone'; write an IANA time zone such as Asia/Shanghai"
NO_ROLLBACK = (
    "this policy rolls back but no rollback runbook is named; "
    "add rollback: FILE at the top of the runbook, or runbook: FILE here"
)


def load_with_rollbacks(path: Path, profile: Profile | None, registry: Registry) -> Runbook:
    """Load a runbook and validate every rollback runbook it names, against the same profile.

    A rollback runbook is read when things have already gone wrong; its mistakes must
    surface at review time, not then. Problems of every file are reported together.
    """
    problems: list[Problem] = []
    seen: set[Path] = set()
    pending = [path]  # as given, so messages name it as the user wrote it
    main: Runbook | None = None
    while pending:
        current = pending.pop(0)
        if current.resolve() in seen:
            continue
        seen.add(current.resolve())
        try:
            runbook = load_runbook(current, profile, registry)
        except RunbookError as exc:
            problems.extend(exc.problems)
            continue
        main = main or runbook
        refs = {runbook.rollback} | {s.on_failure.runbook for _, s in runbook.steps()}
        for ref in sorted(r for r in refs if r):
            # A missing file is already a problem of the runbook that names it.
            if (current.parent / ref).is_file():
                pending.append(current.parent / ref)
    if problems or main is None:
        raise RunbookError(problems)
    return main


def load_profile(path: Path, environ: Mapping[str, str] | None = None) -> Profile:
    """Read an environment profile, expanding ${VAR} and ${VAR:-default} in its strings."""
    doc = read_yaml(path)
    out = Problems(doc)
    if not isinstance(doc.data, dict):
        out.add((), "a profile is a mapping with name and targets")
        out.raise_if_any()
    for where, message in plain_secrets(doc) + expand_env(
        doc, os.environ if environ is None else environ
    ):
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
    loader = _RunbookLoader(read_yaml(path), registry, profile, path.parent)
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


def _known_keys(out: Problems, path: DataPath, data: Any, allowed: Any) -> Any:
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
        self.anchors: dict[str, DateTime | None] = {}  # None: declared but unreadable
        self.teams: list[str] | None = None  # None: unreadable, so owners go unchecked
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
        self._timezone(body.get("timezone"))
        body["anchors"] = self._anchors(body.get("anchors"))
        if isinstance(body.get("rollback"), str):
            self.has_rollback = True
            self._file_exists(("rollback",), body["rollback"])
        teams = body.get("teams", {})
        self.teams = sorted(teams) if isinstance(teams, dict) else None
        body["phases"] = self._phases(body.get("phases"))
        self._check_dependencies()
        self._check_times()
        try:
            return Runbook.model_validate({**body, "source": self.doc.file})
        except ValidationError as exc:
            self.out.validation(exc, (), body, Runbook)
            return None

    def _timezone(self, zone: Any) -> None:
        if zone is None:
            self.out.missing(("timezone",), NO_TIMEZONE)
        elif isinstance(zone, str) and (problem := zone_problem(zone)):
            self.out.add(("timezone",), problem)
        elif isinstance(zone, str):
            self.tz = zone

    def _anchors(self, raw: Any) -> dict[str, DateTime]:
        if not isinstance(raw, dict):
            if raw is not None:
                self.out.add(("anchors",), SHAPES["anchors"])
            return {}
        for name, text in raw.items():
            self.anchors[name] = None
            if not ANCHOR_NAME.match(name):
                message = f"'{name}' is not an anchor name; use a-z, 0-9 and '-', a letter first"
                self.out.add(("anchors", name), message, key=True)
                continue
            try:
                self.anchors[name] = parse_wall(str(text), self.tz)
            except TimeProblem as exc:
                self.out.add(("anchors", name), str(exc))
        return {name: at for name, at in self.anchors.items() if at is not None}

    def _file_exists(self, path: DataPath, ref: str) -> None:
        if not (self.base / ref).is_file():
            message = (
                f"rollback runbook '{ref}' does not exist; name a file relative to this runbook"
            )
            self.out.add(path, message)

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
            message = f"duplicate {kind} id '{ident}' (first on line {first}); "
            message += f"{kind} ids must be unique"
            self.out.add(path + ("id",), message)

    def _step(self, path: DataPath, raw: Any) -> Any:
        body = _known_keys(self.out, path, raw, STEP_KEYS)
        if not isinstance(body, dict):
            return body
        self._unique("step", path, body.get("id"))
        ident = body["id"] if isinstance(body.get("id"), str) else None
        record = _StepRecord(path, len(self.records), ident, self._after(path, body.get("after")))
        self.records.append(record)
        body.update(after=record.after, line=self.doc.where(path)[0])
        self._owner(path, body.get("owner"))
        record.at = body["at"] = self._at(path + ("at",), body.get("at"))
        builders = {"action": self._action, "gates": self._gates, "on_failure": self._on_failure}
        for key, build in builders.items():
            if body.get(key) is not None:
                body[key] = build(path + (key,), body[key])
        # An empty optional key (`notes:`) or an invalid one (reported) means the default.
        return {k: v for k, v in body.items() if v is not None or k not in OPTIONAL_STEP_KEYS}

    def _after(self, path: DataPath, raw: Any) -> list[str]:
        if raw is None:
            return []
        if isinstance(raw, str):
            return [raw]  # `after: announce` for a single dependency
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return raw
        self.out.add(path + ("after",), SHAPES["after"])
        return []

    def _owner(self, path: DataPath, owner: Any) -> None:
        if not isinstance(owner, str) or self.teams is None or owner in self.teams:
            return
        message = f"owner '{owner}' is not a team of this runbook; "
        if self.teams:
            message += suggest(owner, self.teams, "teams")
        else:
            message += "it declares no teams: add one under teams:"
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
            self.out.add(path, SHAPES["action"])
            return None
        step_type = self._step_type("action", "type", path, raw.get("type"))
        params = {k: v for k, v in raw.items() if k != "type"}
        model = self._params(path, step_type, params) if step_type else None
        return Action(type=step_type.name, params=model) if step_type and model else None

    def _gates(self, path: DataPath, raw: Any) -> tuple[Gate, ...]:
        if not isinstance(raw, list):
            self.out.add(path, SHAPES["gates"])
            return ()
        gates = []
        for where, gate in ((path + (i,), gate) for i, gate in enumerate(raw)):
            if not isinstance(gate, dict):
                self.out.add(where, SHAPES["gate"])
                continue
            title = gate.get("title", "")
            if not isinstance(title, str):
                self.out.add(where + ("title",), "a gate's title is text")
            step_type = self._step_type("check", "check", where, gate.get("check"))
            params = {k: v for k, v in gate.items() if k not in ("check", "title")}
            model = self._params(where, step_type, params) if step_type else None
            if step_type and model and isinstance(title, str):
                gates.append(Gate(check=step_type.name, params=model, title=title))
        return tuple(gates)

    def _step_type(self, kind: Kind, key: str, path: DataPath, name: Any) -> StepType | None:
        known = suggest(str(name or ""), self.registry.names(kind), f"known {kind} types")
        found = self.registry.get(kind, name) if isinstance(name, str) else None
        if name is None:
            self.out.missing(path + (key,), f"missing required key '{key}'; {known}")
        elif found is None:
            self.out.add(path + (key,), f"unknown {kind} type '{name}'; {known}")
        return found

    def _params(self, path: DataPath, step_type: StepType, params: dict[str, Any]) -> Params | None:
        if self.profile is not None:
            targets = sorted(self.profile.targets)
            for where, name in _target_values(step_type.params, params):
                if name not in targets:
                    message = f"target '{name}' is not in profile '{self.profile.name}'; "
                    self.out.add(path + where, message + suggest(name, targets, "targets"))
        try:
            return step_type.params.model_validate(params)
        except ValidationError as exc:
            owner = step_type.name
            self.out.validation(exc, path, params, step_type.params, noun="parameter", owner=owner)
            return None

    def _on_failure(self, path: DataPath, raw: Any) -> OnFailure | None:
        if isinstance(raw, str) and raw not in POLICIES:
            self.out.add(path, f"'{raw}' is not a failure policy; " + suggest(raw, POLICIES))
            return None
        if isinstance(raw, str):
            raw = {"policy": raw}  # shorthand: `on_failure: ask`
        elif not isinstance(raw, dict):
            self.out.add(path, SHAPES["on_failure"])
            return None
        raw = _known_keys(self.out, path, raw, OnFailure.model_fields)
        try:
            policy = OnFailure.model_validate(raw)
        except ValidationError as exc:
            self.out.validation(exc, path, raw, OnFailure)
            return None
        if policy.runbook is not None:
            self._file_exists(path + ("runbook",), policy.runbook)
        then = policy.then if policy.policy == "retry" else None
        if "rollback" in (policy.policy, then) and not (policy.runbook or self.has_rollback):
            self.out.add(path, NO_ROLLBACK)
        return policy

    # --- checks across steps ------------------------------------------------

    def _check_dependencies(self) -> None:
        ids = [r.id for r in self.records]
        lines = [self.doc.where(r.path)[0] for r in self.records]
        for row, entry, message in dependency_problems(ids, [r.after for r in self.records], lines):
            path = self.records[row].path + ("after",)
            # `after: x` (one id, no list) has no entry of its own to point at
            self.out.add(path + (entry,) if path + (entry,) in self.doc.values else path, message)

    def _check_times(self) -> None:
        anchors = {name: at for name, at in self.anchors.items() if at is not None}
        rows = []
        for r in self.records:
            usable = r.at is not None and (r.at.anchor is None or r.at.anchor in anchors)
            fixed = resolve(r.at, anchors) if usable and r.at else None
            rows.append((r.id or f"#{r.index}", r.after, fixed))
        for i, dep, at, before in order_conflicts(rows, earliest_times(rows)):
            record = self.records[i]
            written = record.at.text if record.at else None
            message = (
                f"{show(at, written)} is before '{dep}' ({show(before)}), which this step "
                "follows; move it later or drop the dependency"
            )
            self.out.add(record.path + ("at",), message)


def _has_target_ref(annotation: Any, metadata: list[Any]) -> bool:
    if any(isinstance(m, TargetRef) for m in metadata):
        return True
    return any(isinstance(a, TargetRef) or _has_target_ref(a, []) for a in get_args(annotation))


def _target_values(
    model: type[BaseModel], raw: Any, path: DataPath = ()
) -> Iterator[tuple[DataPath, str]]:
    """(path, name) of every parameter typed TargetName in raw params, nested ones too.

    Read from the raw data, so targets are checked even when other parameters are wrong.
    """
    if not isinstance(raw, dict):
        return
    for name, info in model.model_fields.items():
        key = next((k for k in (info.alias, name) if k is not None and k in raw), None)
        if key is None:
            continue
        value = raw[key]
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        nested = model_in(info.annotation)
        for i, item in items:
            where = path + (key,) if i is None else path + (key, i)
            if _has_target_ref(info.annotation, info.metadata) and isinstance(item, str):
                yield where, item
            elif nested is not None:
                yield from _target_values(nested, item, where)
