"""YAML with positions: plain data plus the line and column of every node.

Pydantic reports where a value is wrong as a path of keys and indexes (its
`loc`); a person needs the line in the file. `read_yaml` composes the YAML node
tree (SafeLoader) and keeps, for every data path, where its value and its key
start, so any problem can be reported as `file:line:col: path: message`.

`Problems` collects the problems of one file; `validation_problems` turns a
pydantic ValidationError into such lines, with "did you mean" suggestions.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cutover.errors import Problem, RunbookError
from cutover.runbook import ID_PATTERN
from cutover.types import SECRET_KEYS

DataPath = tuple[str | int, ...]
Position = tuple[int, int]

# Model fields the loader fills in itself; a file may not set them.
INTERNAL_FIELDS = frozenset({"source", "line"})

_SECRET_REF = re.compile(r"^(env|file):.+$")
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp"}
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}


def format_path(path: Iterable[str | int]) -> str:
    """('phases', 0, 'steps', 3, 'at') -> 'phases[0].steps[3].at'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice `name` is most likely a misspelling of, if any is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(name: str, choices: Iterable[str], label: str = "allowed") -> str:
    """'did you mean 'x'? allowed: a, b, c' (the hint part of a problem line)."""
    options = [str(c) for c in choices]
    hint = f"did you mean '{near}'? " if (near := closest(name, options)) else ""
    listing = ", ".join(options) if options else "(none)"
    return f"{hint}{label}: {listing}"


@dataclass
class Doc:
    """One YAML file as plain data, with the position of every value and key."""

    file: str
    data: Any = None
    values: dict[DataPath, Position] = field(default_factory=dict)
    keys: dict[DataPath, Position] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def where(self, path: DataPath, *, key: bool = False) -> Position:
        """Position of the node at `path`, or of its nearest existing ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return (1, 1)

    def problem(
        self, path: DataPath, message: str, *, key: bool = False, shown: DataPath | None = None
    ) -> Problem:
        """A problem at `path`; `shown` is the path named in the text, if different."""
        line, column = self.where(path, key=key)
        label = format_path(path if shown is None else shown)
        return Problem(self.file, line, column, f"{label}: {message}" if label else message)


class Problems:
    """The problems found in one file. A path already reported is not reported
    again by a later, more generic check (one mistake, one line)."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.items: list[Problem] = list(doc.problems)
        self._paths: set[DataPath] = set()

    def add(self, path: DataPath, message: str, *, key: bool = False) -> None:
        if not self.covered(path):
            self._paths.add(path)
            self.items.append(self.doc.problem(path, message, key=key))

    def missing(self, path: DataPath, message: str) -> None:
        """A required key is absent: point at its parent and name the parent."""
        if not self.covered(path):
            self._paths.add(path)
            self.items.append(self.doc.problem(path, message, shown=path[:-1]))

    def covered(self, path: DataPath) -> bool:
        return any(path[:end] in self._paths for end in range(len(path) + 1))

    def validation(
        self,
        exc: ValidationError,
        prefix: DataPath,
        data: Any,
        model: type[BaseModel],
        *,
        noun: str = "key",
        owner: str = "",
    ) -> None:
        for found in validation_problems(exc, data, model, noun=noun, owner=owner):
            if found.kind == "missing":
                self.missing(prefix + found.path, found.message)
            else:
                self.add(prefix + found.path, found.message, key=found.kind == "extra_forbidden")

    def raise_if_any(self) -> None:
        if self.items:
            raise RunbookError(self.items)


# --- reading -------------------------------------------------------------------


def read_yaml(path: Path) -> Doc:
    """Read and compose one YAML file; a syntax error raises RunbookError at once."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunbookError([Problem(file, 1, 1, "file not found")]) from None
    except OSError as exc:
        raise RunbookError([Problem(file, 1, 1, f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise RunbookError([Problem(file, 1, 1, "not UTF-8 text; save it as UTF-8")]) from None
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> Doc:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise RunbookError([_syntax_problem(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise RunbookError([Problem(file, 1, 1, f"YAML syntax error: {exc}")]) from None
    doc = Doc(file)
    if node is not None:
        doc.data = _Builder(doc).build(node, ())
    return doc


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = f"YAML syntax error: {exc.problem or exc.context}"
    if exc.context and exc.problem and exc.context_mark:
        message += f" ({exc.context} on line {exc.context_mark.line + 1})"
    return Problem(file, line, column, message)


class _Builder:
    """Turns composed nodes into dicts, lists and scalars, recording positions."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.constructor = SafeConstructor()
        self.active: set[int] = set()  # guards against recursive aliases

    def build(self, node: Node, path: DataPath) -> Any:
        self.doc.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if id(node) in self.active:
            self.doc.problems.append(self.doc.problem(path, "a YAML alias refers to itself"))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            return self._scalar(node)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: MappingNode, path: DataPath) -> dict[str, Any]:
        self.constructor.flatten_mapping(node)  # resolves `<<: *defaults` merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.doc.problems.append(self.doc.problem(path, "a key must be plain text"))
                continue
            # Keys as written: `on:` or `2023:` stay strings instead of True or 2023.
            key = key_node.value
            position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                first = self.doc.keys[path + (key,)][0]
                message = f"duplicate key '{key}' (first on line {first}); write each key once"
                label = format_path(path + (key,))
                self.doc.problems.append(Problem(self.doc.file, *position, f"{label}: {message}"))
                continue
            self.doc.keys[path + (key,)] = position
            out[key] = self.build(value_node, path + (key,))
        return out

    def _scalar(self, node: ScalarNode) -> Any:
        # Times are parsed by cutover.times, so YAML 1.1's readings of them
        # (timestamps; `18:00` as the base-60 integer 1080) are kept as text.
        if node.tag in _TEXT_TAGS or (node.tag in _NUMBER_TAGS and ":" in node.value):
            return node.value
        return self.constructor.construct_object(node)


# --- checks that apply to every file --------------------------------------------


def walk(data: Any, path: DataPath = ()) -> Iterator[tuple[DataPath, Any]]:
    """Every (path, value) in a data tree, parents before children."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from walk(value, path + (index,))


def plain_secrets(doc: Doc) -> list[tuple[DataPath, str]]:
    """Secret-looking keys holding text: secrets are references, never values."""
    found = []
    for path, value in walk(doc.data):
        key = path[-1] if path else None
        if not isinstance(key, str) or not SECRET_KEYS.match(key):
            continue
        if value is None or isinstance(value, dict | list):
            continue
        if key == "secret" and isinstance(value, str) and _SECRET_REF.match(value):
            continue  # this is the reference itself: {secret: env:NAME}
        var = re.fullmatch(r"\$\{(\w+)(?::-.*)?\}", value) if isinstance(value, str) else None
        ref = f"env:{var.group(1)}" if var else "env:NAME"
        found.append((path, f"{PLAIN_SECRET} {{secret: {ref}}}"))
    return found


PLAIN_SECRET = "a secret written in plain text; write a secret reference such as"
NOT_A_VARIABLE = "'{written}' is not a variable; write ${{NAME}} or ${{NAME:-default}}"
UNSET_VARIABLE = "environment variable {name} is not set; set it, or write ${{{name}:-default}}"
_VARIABLE = re.compile(r"\$\$|\$\{(?P<body>[^}]*)\}|\$\{")
_BODY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?$")


def expand_env(doc: Doc, environ: Mapping[str, str]) -> list[tuple[DataPath, str]]:
    """Replace ${VAR} and ${VAR:-default} in every string value ($$ is a literal $).

    As in a shell, the default also applies when the variable is set but empty.
    """
    found: list[tuple[DataPath, str]] = []

    def expand(text: str, path: DataPath) -> str:
        def one(match: re.Match[str]) -> str:
            written, body = match.group(0), match.group("body")
            parsed = _BODY.match(body) if body is not None else None
            if written == "$$":
                return "$"
            if parsed is None:
                found.append((path, NOT_A_VARIABLE.format(written=written)))
                return written
            name, default = parsed.group("name", "default")
            if environ.get(name) or (name in environ and default is None):
                return environ[name]
            if default is not None:
                return default
            found.append((path, UNSET_VARIABLE.format(name=name)))
            return written

        return _VARIABLE.sub(one, text)

    doc.data = _map_strings(doc.data, (), expand)
    return found


def _map_strings(data: Any, path: DataPath, fn: Callable[[str, DataPath], str]) -> Any:
    if isinstance(data, dict):
        return {k: _map_strings(v, path + (k,), fn) for k, v in data.items()}
    if isinstance(data, list):
        return [_map_strings(v, path + (i,), fn) for i, v in enumerate(data)]
    return fn(data, path) if isinstance(data, str) else data


# --- pydantic errors -> problem lines -------------------------------------------


@dataclass(frozen=True)
class Found:
    """One place a ValidationError complains about, with one message for it."""

    path: DataPath
    kind: str  # pydantic's error type of the first error there
    message: str


def validation_problems(
    exc: ValidationError, data: Any, model: type[BaseModel], *, noun: str = "key", owner: str = ""
) -> list[Found]:
    """One Found per distinct path of a ValidationError.

    A union yields one error per member at the same place; they become one line.
    A misspelt required key yields "missing" and "unknown"; only the unknown key,
    which says "did you mean", is kept.
    """
    grouped: dict[DataPath, tuple[str, list[str]]] = {}
    errors = [(data_loc(data, e["loc"], e["type"]), e) for e in exc.errors(include_url=False)]
    for path, error in errors:
        message = _message(error, path, model, noun, owner)
        kind, messages = grouped.setdefault(path, (error["type"], []))
        if message not in messages:
            messages.append(message)
    for path, error in errors:
        if error["type"] == "extra_forbidden":
            near = closest(str(path[-1]), fields_at(model, path[:-1]))
            twin = path[:-1] + (near,) if near else None
            if twin in grouped and grouped[twin][0] == "missing":
                del grouped[twin]
    return [Found(path, kind, " or ".join(msgs)) for path, (kind, msgs) in grouped.items()]


def data_loc(data: Any, loc: tuple[str | int, ...], kind: str = "") -> DataPath:
    """Drop the parts of a pydantic loc that are not in the data (union member tags)."""
    path: list[str | int] = []
    for i, part in enumerate(loc):
        present = (isinstance(data, dict) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        )
        if present:
            data = data[part]
            path.append(part)
        elif i == len(loc) - 1 and kind in ("missing", "extra_forbidden"):
            path.append(part)  # the missing or unknown key itself
    return tuple(path)


def _message(error: Any, path: DataPath, model: type[BaseModel], noun: str, owner: str) -> str:
    kind, value = error["type"], error.get("input")
    last = path[-1] if path else ""
    where = f" for {owner}" if owner else ""
    if kind == "missing":
        return f"missing required {noun} '{last}'{where}"
    if kind == "extra_forbidden":
        return f"unknown {noun} '{last}'{where}; " + suggest(str(last), fields_at(model, path[:-1]))
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        return f"{value!r} is not allowed; " + suggest(str(value), choices)
    if kind == "string_pattern_mismatch" and error["ctx"]["pattern"] == ID_PATTERN:
        return f"{value!r} is not an id; use lower-case letters, digits and '-'"
    message = error["msg"].removeprefix("Value error, ")
    if kind != "value_error" and isinstance(value, str | int | float | bool):
        message += f" (got {value!r})"
    return message[:1].lower() + message[1:]


def fields_at(model: type[BaseModel], path: DataPath) -> list[str]:
    """The keys a mapping at `path` inside `model` may have (aliases, as written)."""
    annotation: Any = model
    for part in path:
        annotation = _step_into(annotation, part)
        if annotation is None:
            return []
    target = model_in(annotation)
    if target is None:
        return []
    return [f.alias or n for n, f in target.model_fields.items() if n not in INTERNAL_FIELDS]


def _members(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _step_into(annotation: Any, part: str | int) -> Any:
    for member in _members(annotation):
        origin = get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
            for name, info in member.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
            return get_args(member)[0]
        elif origin is dict and isinstance(part, str):
            return get_args(member)[1]
    return None


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `list[Table] | None`, if any."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None
