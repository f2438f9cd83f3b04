"""The channels of a system and their states (running / partial / stopped).

A channel is stopped per business kind, which is how the Shanxi notice stops
"collection-type and account-type business" first and everything else later.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

GROUPS: dict[str, tuple[str, ...]] = {
    "core": ("core",),
    "counter": (
        "counter-pension",
        "counter-unemployment",
        "counter-work-injury",
        "counter-resident",
    ),
    "online": ("online-hall", "nearby-service", "app-citizen", "app-employer"),
    "interface": ("external-interfaces", "hr-tax-platform"),
    "jobs": ("job-statistics", "job-qualification", "job-card-extraction"),
}
CHANNEL_NAMES: tuple[str, ...] = tuple(n for names in GROUPS.values() for n in names)
GROUP_OF: dict[str, str] = {n: g for g, names in GROUPS.items() for n in names}
KINDS: tuple[str, ...] = ("collection", "account", "benefit", "query")


@dataclass
class Channel:
    name: str
    stopped: set[str] = field(default_factory=set)

    @property
    def state(self) -> str:
        if not self.stopped:
            return "running"
        return "stopped" if self.stopped >= set(KINDS) else "partial"

    def serves(self, kind: str) -> bool:
        return kind not in self.stopped

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "group": GROUP_OF[self.name],
            "state": self.state,
            "stopped_business": [k for k in KINDS if k in self.stopped],
        }


class ChannelBoard:
    """Every channel of one system, behind one lock (server threads share it)."""

    def __init__(self, running: bool) -> None:
        self._lock = threading.Lock()
        initial = set() if running else set(KINDS)
        self._channels = {n: Channel(n, set(initial)) for n in CHANNEL_NAMES}

    def get(self, name: str) -> dict | None:
        with self._lock:
            channel = self._channels.get(name)
            return channel.as_dict() if channel else None

    def all(self) -> list[dict]:
        with self._lock:
            return [c.as_dict() for c in self._channels.values()]

    def stop(self, name: str, business: list[str] | None) -> dict:
        with self._lock:
            channel = self._channels[name]
            channel.stopped |= set(business) if business else set(KINDS)
            return channel.as_dict()

    def start(self, name: str, business: list[str] | None) -> dict:
        with self._lock:
            channel = self._channels[name]
            channel.stopped -= set(business) if business else set(KINDS)
            return channel.as_dict()

    def serves(self, name: str, kind: str) -> bool:
        with self._lock:
            return self._channels[name].serves(kind)

    def running(self, name: str) -> bool:
        """Whether a channel serves anything at all (running or partial)."""
        with self._lock:
            return self._channels[name].state != "stopped"
