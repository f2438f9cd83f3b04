"""The step-type registry: what a runbook's `action:` and `gates:` entries can name.

An action is one function `(params, ctx) -> evidence dict`; a check is one function
`(params, ctx) -> Verdict`. Each takes a pydantic parameter model (subclass of
`cutover.types.Params`) and is registered under its `type:` name with
`@action("channels.stop")` or `@check("http")`. Adding a step type touches no
engine code; third-party packages add theirs through the `cutover.steps`
entry-point group, which names a module to import.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, Protocol

from cutover.clock import Clock
from cutover.decisions import Approver
from cutover.profile import Profile, Target
from cutover.types import Params, SecretRef

Evidence = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one gate check, with what was seen and what was wanted."""

    passed: bool
    summary: str
    observed: Any = None
    expected: Any = None

    def as_evidence(self) -> Evidence:
        return {
            "passed": self.passed,
            "summary": self.summary,
            "observed": self.observed,
            "expected": self.expected,
        }


class Facts(Protocol):
    """Named values an execution keeps across steps (e.g. baseline checksums)."""

    def get(self, name: str) -> Any: ...

    def put(self, name: str, value: Any) -> None: ...


@dataclass
class StepContext:
    """Everything a step function may use. Connections are made from `profile`."""

    execution_id: str
    step_id: str
    profile: Profile
    clock: Clock
    workdir: Path
    facts: Facts
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("cutover.step"))
    # Who answers go/no-go questions; only the `approval` step type asks.
    approver: Approver | None = None

    def target(self, name: str) -> Target:
        try:
            return self.profile.targets[name]
        except KeyError:
            raise KeyError(f"target {name!r} is not in profile {self.profile.name!r}") from None

    def secret(self, ref: SecretRef | None) -> str | None:
        return None if ref is None else ref.resolve()


Kind = Literal["action", "check"]


@dataclass(frozen=True)
class StepType:
    name: str
    kind: Kind
    params: type[Params]
    fn: Callable[[Any, StepContext], Any]

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""


class Registry:
    """Step types by kind and name."""

    def __init__(self) -> None:
        self._types: dict[tuple[Kind, str], StepType] = {}

    def add(self, step_type: StepType) -> None:
        key = (step_type.kind, step_type.name)
        existing = self._types.get(key)
        if existing is not None and existing.fn is not step_type.fn:
            raise ValueError(f"{step_type.kind} type {step_type.name!r} is registered twice")
        self._types[key] = step_type

    def get(self, kind: Kind, name: str) -> StepType | None:
        return self._types.get((kind, name))

    def names(self, kind: Kind) -> list[str]:
        return sorted(name for k, name in self._types if k == kind)

    def all(self) -> list[StepType]:
        return sorted(self._types.values(), key=lambda t: (t.kind, t.name))


# The registry the decorators fill. Built-in step types live in the `tasks`
# package; `load_step_types()` imports it and every entry point.
registry = Registry()


def _register(kind: Kind, name: str) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        hints = inspect.get_annotations(fn, eval_str=True)
        first = next(iter(inspect.signature(fn).parameters))
        params = hints.get(first)
        if not (inspect.isclass(params) and issubclass(params, Params)):
            raise TypeError(
                f"{fn.__qualname__}: first parameter must be annotated with a Params model"
            )
        registry.add(StepType(name=name, kind=kind, params=params, fn=fn))
        return fn

    return decorate


def action(name: str) -> Callable[[Callable], Callable]:
    """Register `fn(params, ctx) -> Evidence` as the action type `name`."""
    return _register("action", name)


def check(name: str) -> Callable[[Callable], Callable]:
    """Register `fn(params, ctx) -> Verdict` as the gate check type `name`."""
    return _register("check", name)


def load_step_types() -> Registry:
    """Import the built-in step library and every `cutover.steps` entry point."""
    importlib.import_module("cutover.approval")
    importlib.import_module("tasks")
    for ep in entry_points(group="cutover.steps"):
        importlib.import_module(ep.value)
    return registry
