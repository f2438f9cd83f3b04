"""Small value types shared by runbooks, profiles and step parameters."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(value: Any) -> timedelta:
    """'90s', '5m', '2h', '1d', '1h30m', or a number of seconds -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            days, hours, minutes, seconds = match.groups()
            return timedelta(
                days=int(days or 0),
                hours=int(hours or 0),
                minutes=int(minutes or 0),
                seconds=float(seconds or 0),
            )
    raise ValueError(f"{value!r} is not a duration; write it like 30s, 5m, 2h, 1d or 1h30m")


def format_duration(value: timedelta) -> str:
    total = int(value.total_seconds())
    if total == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


class TargetRef:
    """Marks a parameter whose value names a target of the environment profile.

    The validator checks every field carrying this marker against the profile, so
    a step type only has to annotate its field as `TargetName`.
    """


TargetName = Annotated[str, TargetRef()]


class Params(BaseModel):
    """Base of every step type's parameter model: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(BaseModel):
    """A reference to a secret, resolved at run time and never written down.

    `env:NAME` reads an environment variable; `file:PATH` reads a file (trailing
    newline stripped), e.g. a mounted Kubernetes or Vault-agent secret.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str = Field(pattern=r"^(env|file):.+$", description="env:NAME or file:PATH")

    def resolve(self) -> str:
        scheme, _, name = self.secret.partition(":")
        if scheme == "env":
            value = os.environ.get(name)
            if value is None:
                raise KeyError(f"secret {self.secret}: environment variable {name} is not set")
            return value
        path = Path(name).expanduser()
        try:
            return path.read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise KeyError(f"secret {self.secret}: cannot read {path}: {exc.strerror}") from exc

    def __repr__(self) -> str:
        return f"SecretRef({self.secret!r})"


# Keys whose values are secrets: a plain string there is refused by the validator.
SECRET_KEYS = re.compile(r"(?i)^(password|passwd|pass|secret|token|api[_-]?key|private[_-]?key)$")
