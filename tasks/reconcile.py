"""Reconciliation checks: `reconcile.counts`, `reconcile.checksums`, `manifest.verify`.

Each check's `observed["table"]` is a list of row dicts that the flow shows as a
Prefect table artifact. Checks raise only ConnectError (an unreachable target);
everything else that goes wrong is a failed Verdict that says what and where.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from cutover.errors import ConnectError, StepError
from cutover.steps import StepContext, Verdict, check
from cutover.types import Params, TargetName
from tasks import _db
from tasks._batch import MANIFEST, SAFE_NAME, TableSpec, export_dir, read_manifest, verify_entry


class Counts(Params):
    source: TargetName | None = Field(
        None, description="System whose tables are the reference (or give batch)")
    destination: TargetName = Field(description="System whose tables must have the same counts")
    batch: str | None = Field(
        None, pattern=SAFE_NAME, description="Export batch whose manifest is the reference")
    tables: list[TableSpec] | None = Field(
        None, description="Tables as names or {name, where} (where applies to each database "
        "counted); omitted = every table of the source or the manifest")

    @model_validator(mode="after")
    def _one_reference(self) -> Counts:
        if (self.source is None) == (self.batch is None):
            raise ValueError("give exactly one of source (a target) or batch")
        return self


class Checksums(Params):
    target: TargetName = Field(description="System whose tables to checksum now")
    tables: list[str] | None = Field(None, description="Tables; omitted = every baseline table")
    baseline: str = Field(description="Fact saved by database.checksum (save_as)")


class ManifestVerify(Params):
    batch: str = Field(pattern=SAFE_NAME, description="Export batch in workdir/exports/")


def _db_counts(ctx: StepContext, target: str, specs: list[TableSpec] | None
               ) -> tuple[list[TableSpec], dict[str, int | None]]:
    """Counts per table (None for a missing table) and the tables counted."""
    with _db.open_database(ctx, target) as db, db.connect("count", snapshot=True) as conn:
        existing = _db.table_names(conn)
        specs = specs if specs is not None else [TableSpec(name=t) for t in existing]
        return specs, {s.name: _db.count_rows(conn, s.name, s.where) if s.name in existing
                       else None for s in specs}


@check("reconcile.counts")
def counts(params: Counts, ctx: StepContext) -> Verdict:
    """Row counts per table equal between source and destination (or batch and destination)."""
    specs = params.tables
    try:
        if params.batch is not None:
            label = f"batch {params.batch}"
            manifest = read_manifest(export_dir(ctx, params.batch))
            if manifest is None:
                return Verdict(False, f"reconcile.counts: batch {params.batch} has no manifest "
                               f"in {export_dir(ctx, params.batch)}")
            reference = {t["name"]: t["rows"] for t in manifest["tables"]}
            specs = specs if specs is not None else [TableSpec(name=t) for t in reference]
            reference = {s.name: reference.get(s.name) for s in specs}
        else:
            label = params.source or ""
            specs, reference = _db_counts(ctx, label, specs)
        _, observed = _db_counts(ctx, params.destination, specs)
    except ConnectError:
        raise
    except StepError as exc:
        return Verdict(False, f"reconcile.counts: {exc}")
    rows = [{"table": s.name, "source": reference[s.name], "destination": observed[s.name],
             "match": reference[s.name] is not None and reference[s.name] == observed[s.name]}
            for s in specs]
    bad = [r for r in rows if not r["match"]]
    where = f"{label} and {params.destination}"
    summary = (f"reconcile.counts: {len(rows)} tables match between {where}" if not bad else
               f"reconcile.counts: {len(bad)} of {len(rows)} tables differ between {where}: "
               + ", ".join(f"{r['table']} {_n(r['source'])} vs {_n(r['destination'])}"
                           for r in bad[:5]))
    return Verdict(not bad, summary, {"table": rows}, "row counts equal per table")


def _n(value: int | None) -> str:
    return "missing" if value is None else str(value)


@check("reconcile.checksums")
def checksums(params: Checksums, ctx: StepContext) -> Verdict:
    """Current rows and SHA-256 of each table equal the baseline saved earlier."""
    try:
        baseline = ctx.facts.get(params.baseline)
    except KeyError:
        baseline = None
    if not isinstance(baseline, dict):
        return Verdict(False, f"reconcile.checksums: no baseline fact {params.baseline!r}; "
                       f"save one with database.checksum save_as: {params.baseline}",
                       None, params.baseline)
    tables = params.tables if params.tables is not None else list(baseline)
    try:
        with _db.open_database(ctx, params.target) as db, \
                db.connect("checksum", snapshot=True) as conn:
            existing = set(_db.table_names(conn))
            current = {t: _db.table_digest(conn, t) if t in existing else None for t in tables}
    except ConnectError:
        raise
    except StepError as exc:
        return Verdict(False, f"reconcile.checksums: {exc}")
    rows = []
    for table in tables:
        was, now = baseline.get(table) or {}, current[table] or {}
        rows.append({"table": table, "baseline_rows": was.get("rows"), "rows": now.get("rows"),
                     "baseline_sha256": (was.get("sha256") or "")[:16],
                     "sha256": (now.get("sha256") or "")[:16],
                     "match": bool(was) and bool(now) and was == now})
    bad = [r["table"] for r in rows if not r["match"]]
    summary = (f"reconcile.checksums: {len(rows)} tables on {params.target} equal baseline "
               f"{params.baseline}" if not bad else
               f"reconcile.checksums: {len(bad)} of {len(rows)} tables on {params.target} "
               f"differ from baseline {params.baseline}: {', '.join(bad[:10])}")
    return Verdict(not bad, summary, {"table": rows, "checksums": current},
                   {t: baseline.get(t) for t in tables})


@check("manifest.verify")
def manifest_verify(params: ManifestVerify, ctx: StepContext) -> Verdict:
    """Every file of the batch has the manifest's size, SHA-256 and row count."""
    directory = export_dir(ctx, params.batch)
    try:
        manifest = read_manifest(directory)
    except StepError as exc:
        return Verdict(False, f"manifest.verify: {exc}")
    if manifest is None:
        return Verdict(False, f"manifest.verify: batch {params.batch} has no manifest in "
                       f"{directory}")
    rows = [verify_entry(directory, e, count_rows=True) for e in manifest["tables"]]
    bad = [r for r in rows if not r["match"]]
    summary = (f"manifest.verify: {len(rows)} files of batch {params.batch} match" if not bad else
               f"manifest.verify: {len(bad)} of {len(rows)} files of batch {params.batch} do "
               "not match: " + "; ".join(f"{r['file']}: {r['problem']}" for r in bad[:5]))
    return Verdict(not bad, summary, {"table": rows}, str(directory / MANIFEST))
