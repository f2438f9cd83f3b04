"""Database actions: freeze, unfreeze, checksum, query, backup, export, load; the `sql` check.

Every action checks before it acts, so a re-run after a crash repeats nothing:
frozen tables are not frozen again, a verified export is not written again, a
table that already holds a batch is not loaded again. Dialect SQL and CSV live
in `tasks._db`, the freeze triggers in `tasks._freeze`, export batches (manifests and
their verification) in `tasks._batch`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from cutover.errors import ConnectError, StepError
from cutover.steps import Evidence, StepContext, Verdict, action, check
from cutover.types import Params, TargetName
from tasks import _db, _freeze
from tasks._batch import (
    MANIFEST,
    SAFE_NAME,
    TableSpec,
    export_dir,
    file_sha256,
    read_manifest,
    verify_entry,
    write_atomic,
)

MAX_QUERY_ROWS = 200


class Freeze(Params):
    target: TargetName = Field(description="System whose database to freeze")
    tables: list[str] | None = Field(None, description="Tables to freeze; omitted = every table")


class Unfreeze(Params):
    target: TargetName = Field(description="System whose database to unfreeze")
    tables: list[str] | None = Field(
        None, description="Tables to unfreeze; omitted = every table")


class Checksum(Params):
    target: TargetName = Field(description="System whose tables to checksum")
    tables: list[str] | None = Field(None, description="Tables; omitted = every table")
    save_as: str | None = Field(
        None, description="Fact name to keep {table: {rows, sha256}} under, e.g. for "
        "reconcile.checksums")


class Query(Params):
    target: TargetName = Field(description="System whose database to query")
    sql: str = Field(description="One SQL statement, run as written and committed")
    save_as: str | None = Field(None, description="Fact name to keep the rows under")


class Backup(Params):
    target: TargetName = Field(description="System whose database to back up")
    name: str = Field(pattern=SAFE_NAME,
                      description="Backup name: workdir/backups/<name>.db (SQLite) or "
                      "workdir/backups/<name>/ (CSV per table + manifest.json)")


class Export(Params):
    target: TargetName = Field(description="System whose tables to export")
    batch: str = Field(pattern=SAFE_NAME,
                       description="Batch name: files go to workdir/exports/<batch>/")
    tables: list[TableSpec] | None = Field(
        None, description="Tables as names or {name, where}; omitted = every table")


class Load(Params):
    target: TargetName = Field(description="System whose database receives the batch")
    batch: str = Field(pattern=SAFE_NAME, description="Export batch in workdir/exports/")
    replace: bool = Field(True, description="Delete each table's rows before loading it")


class SqlCheck(Params):
    target: TargetName = Field(description="System whose database to ask")
    query: str = Field(description="A query whose first column of the first row is the answer")
    equals: int | float | str | None = Field(None, description="The answer must equal this")
    min: float | None = Field(None, description="The answer must be at least this")
    max: float | None = Field(None, description="The answer must be at most this")

    @model_validator(mode="after")
    def _some_expectation(self) -> SqlCheck:
        if self.equals is None and self.min is None and self.max is None:
            raise ValueError("give at least one of equals, min, max")
        return self


@action("database.freeze")
def freeze(params: Freeze, ctx: StepContext) -> Evidence:
    """Block every write with BEFORE INSERT/UPDATE/DELETE triggers, then prove it.

    Tables already carrying the freeze triggers are left alone. The proof is a
    write to every frozen table inside a transaction that is rolled back: each
    must be refused by the freeze, or the step fails."""
    with _db.open_database(ctx, params.target) as db:
        with db.connect("freeze") as conn:
            tables = _db.require_tables(conn, params.tables)
            frozen, already = [], []
            for table in tables:
                created = _freeze.freeze_table(conn, table)
                (frozen if created else already).append(table)
            conn.commit()
        errors = _freeze.probe_writes(db, tables)
    refused = {t: m for t, m in errors.items() if _freeze.FREEZE_MARK in m}
    not_refused = {t: errors[t] or "the write went through" for t in tables if t not in refused}
    evidence = {"target": params.target, "dialect": db.engine.dialect.name, "frozen": frozen,
                "already_frozen": already, "verification": {
                    "writes_attempted": len(tables), "refused": len(refused),
                    "message": next(iter(refused.values()), None), "not_refused": not_refused}}
    if not_refused:
        table, why = next(iter(not_refused.items()))
        raise StepError(f"freeze of {params.target} not effective: a write to {table} was not "
                        f"refused by the freeze ({why})", evidence=evidence)
    return evidence


@action("database.unfreeze")
def unfreeze(params: Unfreeze, ctx: StepContext) -> Evidence:
    """Drop the freeze triggers; tables without them are left alone."""
    with _db.open_database(ctx, params.target) as db, db.connect("unfreeze") as conn:
        tables = _db.require_tables(conn, params.tables)
        dropped = [t for t in tables if _freeze.unfreeze_table(conn, t)]
        conn.commit()
        remaining = [t for t in tables if _freeze.freeze_triggers(conn, t)]
    if remaining:
        raise StepError(f"freeze triggers still on {', '.join(remaining)} of {params.target}")
    return {"target": params.target, "unfrozen": dropped,
            "already_unfrozen": [t for t in tables if t not in dropped]}


@action("database.checksum")
def checksum(params: Checksum, ctx: StepContext) -> Evidence:
    """Row count and SHA-256 of every table, rows ordered by primary key."""
    with _db.open_database(ctx, params.target) as db:
        with db.connect("checksum", snapshot=True) as conn:
            tables = _db.require_tables(conn, params.tables)
            sums = {table: _db.table_digest(conn, table) for table in tables}
    if params.save_as:
        ctx.facts.put(params.save_as, sums)
    return {"target": params.target, "checksums": sums, "saved_as": params.save_as,
            "table": [{"table": t, **s} for t, s in sums.items()]}


def _json_value(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) \
        else _db.text_value(value)


@action("database.query")
def query(params: Query, ctx: StepContext) -> Evidence:
    """Run one statement and keep up to 200 rows as evidence (and as a fact)."""
    with _db.open_database(ctx, params.target) as db, db.connect("query") as conn:
        result = _db.run_sql(conn, params.sql)
        if not result.returns_rows:
            affected = result.rowcount
            conn.commit()
            return {"target": params.target, "rows_affected": affected}
        cols = list(result.keys())
        fetched = result.fetchmany(MAX_QUERY_ROWS + 1)
        conn.commit()
    rows = [dict(zip(cols, map(_json_value, row), strict=True))
            for row in fetched[:MAX_QUERY_ROWS]]
    if params.save_as:
        ctx.facts.put(params.save_as, rows)
    return {"target": params.target, "columns": cols, "rows": rows,
            "truncated": len(fetched) > MAX_QUERY_ROWS, "saved_as": params.save_as}


def export_tables(ctx: StepContext, db: _db.Database, specs: list[TableSpec] | None,
                  directory: Path, batch: str) -> Evidence:
    """Export tables into `directory` (CSV each, manifest.json last), unless done already."""
    existing = read_manifest(directory)
    if existing is not None and _still_valid(existing, specs, db.target, directory):
        return {"target": db.target, "batch": batch, "directory": str(directory),
                "skipped": True, "reason": "manifest exists and every file matches it",
                "table": [{"table": t["name"], "rows": t["rows"], "bytes": t["bytes"]}
                          for t in existing["tables"]]}
    entries = []
    with db.connect("export", snapshot=True) as conn:
        directory.mkdir(parents=True, exist_ok=True)
        # Files and manifest must never disagree: the old manifest goes before any file changes.
        (directory / MANIFEST).unlink(missing_ok=True)
        wanted = specs if specs is not None else [TableSpec(name=t)
                                                  for t in _db.table_names(conn)]
        _db.require_tables(conn, [s.name for s in wanted])
        for spec in wanted:
            entries.append(_export_table(conn, spec, directory))
        manifest = {"batch": batch, "source": db.target,
                    "created_at": ctx.clock.now().isoformat(), "tables": entries}
        write_atomic(directory / MANIFEST,
                     json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8"))
    return {"target": db.target, "batch": batch, "directory": str(directory), "skipped": False,
            "table": [{"table": e["name"], "rows": e["rows"], "bytes": e["bytes"]}
                      for e in entries]}


def _export_table(conn: Any, spec: TableSpec, directory: Path) -> dict[str, Any]:
    if "/" in spec.name or spec.name.startswith("."):
        raise StepError(f"table name {spec.name!r} cannot be a file name")
    final = directory / f"{spec.name}.csv"
    partial = directory / f".{final.name}.part"
    with partial.open("wb") as file:
        sink = _db.Sink(file)
        rows = _db.copy_out(conn, spec.name, spec.where, sink)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, final)
    return {"name": spec.name, "file": final.name, "rows": rows,
            "sha256": sink.sha256.hexdigest(), "bytes": sink.bytes, "where": spec.where}


def _still_valid(manifest: dict[str, Any], specs: list[TableSpec] | None, source: str,
                 directory: Path) -> bool:
    """Is an existing batch what this export would write, and intact?"""
    if manifest.get("source") != source:
        return False
    if specs is not None and [(t["name"], t.get("where")) for t in manifest["tables"]] != \
            [(s.name, s.where) for s in specs]:
        return False
    return all(verify_entry(directory, t, count_rows=False)["match"] for t in manifest["tables"])


@action("database.backup")
def backup(params: Backup, ctx: StepContext) -> Evidence:
    """SQLite: the online backup API into one file; others: CSV per table + manifest.

    An existing backup whose SHA-256 still matches its `.sha256` file is kept."""
    backups = ctx.workdir / "backups"
    with _db.open_database(ctx, params.target) as db:
        if db.family != "sqlite":
            return export_tables(ctx, db, None, backups / params.name, params.name)
        path = backups / f"{params.name}.db"
        sidecar = path.with_name(path.name + ".sha256")
        with db.errors("backup"):
            if path.is_file() and sidecar.is_file() and \
                    sidecar.read_text().split()[0] == file_sha256(path):
                return {"target": params.target, "path": str(path), "skipped": True,
                        "reason": "backup exists and its SHA-256 matches",
                        "sha256": file_sha256(path), "bytes": path.stat().st_size}
            backups.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.part")
            partial.unlink(missing_ok=True)
            with db.connect("backup") as conn:
                target_db = sqlite3.connect(partial)
                try:
                    conn.connection.driver_connection.backup(target_db)
                finally:
                    target_db.close()
            digest = file_sha256(partial)
            os.replace(partial, path)
            write_atomic(sidecar, f"{digest}  {path.name}\n".encode())
    return {"target": params.target, "path": str(path), "skipped": False,
            "method": "sqlite online backup", "sha256": digest, "bytes": path.stat().st_size}


@action("database.export")
def export(params: Export, ctx: StepContext) -> Evidence:
    """CSV per table plus manifest.json in workdir/exports/<batch>/.

    Each file is written under a temporary name and renamed; the manifest comes
    last. A batch whose manifest exists and whose files all verify is kept."""
    with _db.open_database(ctx, params.target) as db:
        return export_tables(ctx, db, params.tables, export_dir(ctx, params.batch), params.batch)


@action("database.load")
def load(params: Load, ctx: StepContext) -> Evidence:
    """Load an export batch into the target's tables in one transaction.

    A table that already holds exactly the manifest's rows (same count, same
    SHA-256 when exported again) is skipped; any failure rolls every table back."""
    directory = export_dir(ctx, params.batch)
    manifest = read_manifest(directory)
    if manifest is None:
        raise StepError(f"batch {params.batch}: no manifest.json in {directory}")
    bad = [r for r in (verify_entry(directory, e, count_rows=False)
                       for e in manifest["tables"]) if not r["match"]]
    if bad:
        raise StepError(f"batch {params.batch}: {bad[0]['table']}: {bad[0]['problem']}; "
                        "export it again", evidence={"table": bad})
    with _db.open_database(ctx, params.target) as db, db.connect("load") as conn:
        to_load, skipped = [], []
        for entry in manifest["tables"]:
            (skipped if _holds(conn, entry) else to_load).append(entry)
        if params.replace:  # children before parents, so foreign keys allow it
            for entry in reversed(to_load):
                _db.run_sql(conn, f"DELETE FROM {_db.quote(conn, entry['name'])}")
        loaded = []
        for entry in to_load:
            rows = _db.copy_in(conn, entry["name"], directory / entry["file"])
            _db.reset_sequences(conn, entry["name"])
            total = _db.count_rows(conn, entry["name"])
            if rows != entry["rows"] or (params.replace and total != entry["rows"]):
                raise StepError(f"load of {entry['name']} into {params.target}: "
                                f"{rows} rows inserted, table has {total}, manifest says "
                                f"{entry['rows']}; rolled back")
            loaded.append({"table": entry["name"], "rows": rows, "skipped": False})
        conn.commit()
    return {"target": params.target, "batch": params.batch, "replace": params.replace,
            "loaded": [r["table"] for r in loaded], "skipped": [e["name"] for e in skipped],
            "table": loaded + [{"table": e["name"], "rows": e["rows"], "skipped": True}
                               for e in skipped]}


def _holds(conn: Any, entry: dict[str, Any]) -> bool:
    """Does the table already hold exactly this manifest entry's data?"""
    if _db.count_rows(conn, entry["name"]) != entry["rows"]:
        return False  # the cheap test first: a full re-export only when counts agree
    sink = _db.Sink()
    _db.copy_out(conn, entry["name"], None, sink)
    return sink.sha256.hexdigest() == entry["sha256"]


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _show(value: Any) -> str:
    """An expected value as a person writes it: 1.0 -> 1, strings quoted."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _expectation(params: SqlCheck) -> str:
    parts = [] if params.equals is None else [_show(params.equals)]
    if params.min is not None:
        parts.append(f">= {_show(params.min)}")
    if params.max is not None:
        parts.append(f"<= {_show(params.max)}")
    return " and ".join(parts)


def _fits(value: Any, params: SqlCheck) -> bool:
    number = _number(value)
    if params.equals is not None:
        wanted = _number(params.equals)
        if not (number == wanted if number is not None and wanted is not None
                else str(value) == str(params.equals)):
            return False
    if params.min is not None or params.max is not None:
        if number is None:
            return False
        if params.min is not None and number < _number(params.min):
            return False
        if params.max is not None and number > _number(params.max):
            return False
    return True


@check("sql")
def sql_check(params: SqlCheck, ctx: StepContext) -> Verdict:
    """Run a scalar query (never committed); passes when the answer fits equals / min / max."""
    short = " ".join(params.query.split())
    short = short if len(short) <= 60 else short[:57] + "..."
    expected = {k: v for k, v in (("equals", params.equals), ("min", params.min),
                                  ("max", params.max)) if v is not None}
    try:
        with _db.open_database(ctx, params.target) as db, db.connect("sql check") as conn:
            row = _db.run_sql(conn, params.query).first()
    except ConnectError:
        raise  # an unreachable target is the one thing a check raises for
    except StepError as exc:
        return Verdict(False, f"sql: {short} failed: {exc}", None, expected)
    if row is None:
        return Verdict(False, f"sql: {short} returned no rows (expected "
                       f"{_expectation(params)})", None, expected)
    value = _json_value(row[0])
    return Verdict(_fits(row[0], params),
                   f"sql: {short} = {value} (expected {_expectation(params)})", value, expected)
