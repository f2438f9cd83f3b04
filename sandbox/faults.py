"""Fault specs shared by every part of one sandbox.

A spec is `<component>:<name>`: `old:health-fail`, `new:refuse-stop:core`,
`receiver:reject`, `data:open-reviews`. One `FaultSet` per sandbox is passed to
each service, so a fault set through any door (CLI, HTTP, test) is seen by all.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from sandbox.channels import CHANNEL_NAMES
from sandbox.data import DATA_FAULTS

COMPONENTS = ("old", "new", "receiver", "data")
_SYSTEM_FAULT = re.compile(r"^(old|new):(health-fail|refuse-stop:(?P<channel>[a-z-]+))$")
_OTHER = {f"receiver:{n}" for n in ("count-mismatch", "reject")} | {
    f"data:{n}" for n in DATA_FAULTS
}


def validate(spec: str) -> str:
    """Return the spec if it is one the sandbox knows, else raise ValueError."""
    match = _SYSTEM_FAULT.match(spec)
    if match and (match["channel"] is None or match["channel"] in CHANNEL_NAMES):
        return spec
    if spec in _OTHER:
        return spec
    known = "old|new:health-fail, old|new:refuse-stop:<channel>, " + ", ".join(sorted(_OTHER))
    raise ValueError(f"unknown fault {spec!r}; known: {known}")


def qualify(name: str, component: str) -> str:
    """`health-fail` sent to the old system means `old:health-fail`."""
    head = name.split(":", 1)[0]
    return name if head in COMPONENTS else f"{component}:{name}"


Listener = Callable[[str, bool], None]


class FaultSet:
    """The active faults; thread-safe because every server thread reads it.

    Listeners hear every change (spec, active), which is how a `data:` fault set
    at run time bends the old database no matter which door it came through.
    """

    def __init__(self, specs: tuple[str, ...] | list[str] = ()) -> None:
        self._lock = threading.Lock()
        self._active: set[str] = {validate(s) for s in specs}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add(self, spec: str) -> None:
        validate(spec)
        for listener in self._listeners:
            listener(spec, True)
        with self._lock:
            self._active.add(spec)

    def discard(self, spec: str) -> None:
        for listener in self._listeners:
            listener(spec, False)
        with self._lock:
            self._active.discard(spec)

    def active(self, spec: str) -> bool:
        with self._lock:
            return spec in self._active

    def names(self, component: str | None = None) -> list[str]:
        """Sorted specs, optionally only one component's."""
        with self._lock:
            specs = sorted(self._active)
        if component is None:
            return specs
        return [s for s in specs if s.startswith(component + ":")]
