"""Export batches on our side: `workdir/exports/<batch>/`, CSV files and manifest.json.

Shared by `tasks.database` (which writes and loads batches) and
`tasks.reconcile` (which checks them). A manifest lists one entry per table:
{name, file, rows, sha256, bytes, where}.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from cutover.errors import StepError
from cutover.steps import StepContext
from cutover.types import Params
from tasks import _db

MANIFEST = "manifest.json"
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # batch and backup names become directory names
_ENTRY_KEYS = ("name", "file", "rows", "sha256", "bytes")


class TableSpec(Params):
    """A table and an optional row filter; a bare string means {name: <string>}."""

    name: str = Field(description="Table name")
    where: str | None = Field(
        None, description="SQL condition the rows must meet, e.g. city = 'Taiyuan'")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


def export_dir(ctx: StepContext, batch: str) -> Path:
    return Path(ctx.workdir) / "exports" / batch


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name, then rename: readers never see half a file."""
    partial = path.with_name(f".{path.name}.part")
    with partial.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The batch's manifest, None when there is none; StepError when it is unusable."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StepError(f"{path}: unreadable manifest: {_db.one_line(exc)}") from exc
    tables = data.get("tables") if isinstance(data, dict) else None
    if not isinstance(tables, list) or not all(
            isinstance(t, dict) and all(k in t for k in _ENTRY_KEYS) for t in tables):
        raise StepError(f"{path}: not a manifest (needs tables: [{{{', '.join(_ENTRY_KEYS)}}}])")
    if any(Path(t["file"]).name != t["file"] for t in tables):
        raise StepError(f"{path}: file names must not contain directories")
    return data


def count_records(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in _db.read_records(file)) - 1  # less the header


def verify_entry(directory: Path, entry: dict[str, Any], *, count_rows: bool) -> dict[str, Any]:
    """One manifest entry against its file: a row for the evidence table."""
    path = directory / entry["file"]
    result: dict[str, Any] = {"table": entry["name"], "file": entry["file"],
                              "rows_expected": entry["rows"], "rows": None,
                              "sha256_ok": False, "match": False, "problem": None}
    try:
        if not path.is_file():
            result["problem"] = "file missing"
            return result
        size = path.stat().st_size
        result["sha256_ok"] = size == entry["bytes"] and file_sha256(path) == entry["sha256"]
        if count_rows:
            result["rows"] = count_records(path)
    except (OSError, UnicodeError, StepError) as exc:
        result["problem"] = f"unreadable: {_db.one_line(exc)}"
        return result
    if not result["sha256_ok"]:
        result["problem"] = (f"{size} bytes, manifest says {entry['bytes']}"
                             if size != entry["bytes"] else "SHA-256 differs from the manifest")
    elif count_rows and result["rows"] != entry["rows"]:
        result["problem"] = f"{result['rows']} rows, manifest says {entry['rows']}"
    result["match"] = result["problem"] is None
    return result
