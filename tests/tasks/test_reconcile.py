"""reconcile.counts, reconcile.checksums and manifest.verify against real databases and files."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.pool import NullPool

from cutover.errors import ConnectError
from cutover.profile import DatabaseEndpoint, Target
from cutover.steps import StepContext
from tasks.database import Checksum, Export, Load, checksum, export, load
from tasks.reconcile import Checksums, Counts, ManifestVerify, checksums, counts, manifest_verify

metadata = sa.MetaData()
people = sa.Table("people", metadata,
                  sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                  sa.Column("name", sa.String(40)), sa.Column("city", sa.String(40)))
payments = sa.Table("payments", metadata,
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("person_id", sa.Integer), sa.Column("amount_cents", sa.Integer))
PEOPLE = [{"id": i, "name": f"P{i}", "city": ("Taiyuan", "Datong")[i % 2]} for i in range(1, 41)]
PAYMENTS = [{"id": i, "person_id": i % 40 + 1, "amount_cents": 100 * i} for i in range(1, 101)]


def run(url: str, sql: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


@pytest.fixture
def new_database(scratch_database: Callable[..., str]) -> Callable[..., str]:
    """`new_database(kind, seed=True)` -> URL of a fresh database with people and payments."""
    def make(kind: str, seed: bool = True) -> str:
        rows = {people: PEOPLE, payments: PAYMENTS} if seed else None
        return scratch_database(kind, metadata, rows)
    return make


def context(make_context: Callable[..., StepContext], **urls: str) -> StepContext:
    return make_context({name: Target(database=DatabaseEndpoint(url=url))
                         for name, url in urls.items()})


def moved(make_context: Any, new_database: Any, destination: str = "sqlite") -> StepContext:
    """old (SQLite, seeded) exported as batch `nov` and loaded into new (`destination`)."""
    ctx = context(make_context, old=new_database("sqlite"),
                  new=new_database(destination, seed=False))
    export(Export(target="old", batch="nov"), ctx)
    load(Load(target="new", batch="nov"), ctx)
    return ctx


# -- reconcile.counts ----------------------------------------------------------------------


def test_counts_between_source_and_destination(kind: str, new_database: Any,
                                               make_context: Any) -> None:
    ctx = moved(make_context, new_database, kind)

    ok = counts(Counts(source="old", destination="new"), ctx)
    run(ctx.profile.targets["new"].database.url, "DELETE FROM payments WHERE id = 7")
    short = counts(Counts(source="old", destination="new"), ctx)

    assert ok.passed and ok.summary == "reconcile.counts: 2 tables match between old and new"
    assert ok.observed["table"] == [
        {"table": "payments", "source": 100, "destination": 100, "match": True},
        {"table": "people", "source": 40, "destination": 40, "match": True}]
    assert not short.passed
    assert short.summary == ("reconcile.counts: 1 of 2 tables differ between old and new: "
                             "payments 100 vs 99")
    assert short.observed["table"][0] == {"table": "payments", "source": 100,
                                          "destination": 99, "match": False}


def test_counts_between_batch_and_destination(new_database: Any, make_context: Any) -> None:
    ctx = moved(make_context, new_database)

    ok = counts(Counts(batch="nov", destination="new"), ctx)
    extra = counts(Counts(batch="nov", destination="new", tables=["people", "benefits"]), ctx)

    assert ok.passed and ok.summary.endswith("2 tables match between batch nov and new")
    assert not extra.passed
    assert extra.observed["table"][1] == {"table": "benefits", "source": None,
                                          "destination": None, "match": False}
    assert "benefits missing vs missing" in extra.summary


def test_counts_with_where_per_table(new_database: Any, make_context: Any) -> None:
    ctx = moved(make_context, new_database)
    run(ctx.profile.targets["new"].database.url, "DELETE FROM people WHERE city = 'Datong'")
    taiyuan = [{"name": "people", "where": "city = 'Taiyuan'"}]

    assert counts(Counts(source="old", destination="new", tables=taiyuan), ctx).passed
    everyone = counts(Counts(source="old", destination="new", tables=["people"]), ctx)
    assert not everyone.passed and "people 40 vs 20" in everyone.summary


def test_counts_missing_batch_fails_and_unreachable_destination_raises(
        new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, new=new_database("sqlite"),
                  down="postgresql+psycopg://postgres@127.0.0.1:1/none")

    missing = counts(Counts(batch="dec", destination="new"), ctx)

    assert not missing.passed and "batch dec has no manifest" in missing.summary
    with pytest.raises(ConnectError, match="cannot connect to database of down"):
        counts(Counts(source="new", destination="down"), ctx)


def test_counts_needs_exactly_one_reference() -> None:
    with pytest.raises(ValidationError, match="exactly one of source"):
        Counts(destination="new")
    with pytest.raises(ValidationError, match="exactly one of source"):
        Counts(source="old", batch="nov", destination="new")


# -- reconcile.checksums -------------------------------------------------------------------


def test_checksums_hold_until_the_data_changes(kind: str, new_database: Any,
                                               make_context: Any) -> None:
    url = new_database(kind)
    ctx = context(make_context, db=url)
    checksum(Checksum(target="db", save_as="frozen"), ctx)

    same = checksums(Checksums(target="db", baseline="frozen"), ctx)
    run(url, "UPDATE people SET name = 'changed' WHERE id = 3")
    changed = checksums(Checksums(target="db", baseline="frozen"), ctx)
    only_payments = checksums(Checksums(target="db", baseline="frozen", tables=["payments"]),
                              ctx)

    assert same.passed and same.summary == ("reconcile.checksums: 2 tables on db equal "
                                            "baseline frozen")
    assert not changed.passed and changed.summary.endswith("differ from baseline frozen: people")
    assert [r["match"] for r in changed.observed["table"]] == [True, False]
    assert changed.observed["table"][1]["rows"] == 40  # same count, different content
    assert only_payments.passed


def test_checksums_without_baseline_fail_clearly(new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, db=new_database("sqlite"))

    verdict = checksums(Checksums(target="db", baseline="never-saved"), ctx)

    assert not verdict.passed
    assert verdict.summary == ("reconcile.checksums: no baseline fact 'never-saved'; save one "
                               "with database.checksum save_as: never-saved")


@pytest.mark.postgres
def test_baseline_of_the_old_system_holds_on_the_new_one(new_database: Any,
                                                         make_context: Any) -> None:
    ctx = moved(make_context, new_database, "postgresql")  # SQLite -> PostgreSQL
    checksum(Checksum(target="old", save_as="old-data"), ctx)

    assert checksums(Checksums(target="new", baseline="old-data"), ctx).passed


# -- manifest.verify -----------------------------------------------------------------------


def test_manifest_verify_passes_then_sees_each_kind_of_damage(new_database: Any,
                                                              make_context: Any) -> None:
    ctx = context(make_context, old=new_database("sqlite"))
    export(Export(target="old", batch="nov"), ctx)
    directory = ctx.workdir / "exports" / "nov"

    ok = manifest_verify(ManifestVerify(batch="nov"), ctx)
    (directory / "people.csv").write_bytes(
        (directory / "people.csv").read_bytes().replace(b"P1,", b"Q1,", 1))  # same size
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["tables"][0]["rows"] = 99  # payments: file intact, count claimed wrong
    (directory / "manifest.json").write_text(json.dumps(manifest))
    damaged = manifest_verify(ManifestVerify(batch="nov"), ctx)
    (directory / "people.csv").unlink()
    gone = manifest_verify(ManifestVerify(batch="nov"), ctx)

    assert ok.passed and ok.summary == "manifest.verify: 2 files of batch nov match"
    assert {r["table"]: r["rows"] for r in ok.observed["table"]} == {"payments": 100, "people": 40}
    assert not damaged.passed
    assert "payments.csv: 100 rows, manifest says 99" in damaged.summary
    assert "people.csv: SHA-256 differs from the manifest" in damaged.summary
    assert "people.csv: file missing" in gone.summary


def test_manifest_verify_without_manifest_fails(make_context: Any) -> None:
    verdict = manifest_verify(ManifestVerify(batch="none"), make_context({}))
    assert not verdict.passed and "batch none has no manifest" in verdict.summary
