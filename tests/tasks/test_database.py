"""database.* actions and the sql check against real SQLite files, PostgreSQL and MariaDB.

Every database is created fresh for the test by conftest's `scratch_database`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from cutover.errors import ConnectError, StepError
from cutover.profile import DatabaseEndpoint, Target
from cutover.steps import StepContext
from cutover.types import SecretRef
from tasks import _db
from tasks.database import (
    Backup,
    Checksum,
    Export,
    Freeze,
    Load,
    Query,
    SqlCheck,
    Unfreeze,
    backup,
    checksum,
    export,
    freeze,
    load,
    query,
    sql_check,
    unfreeze,
)

metadata = sa.MetaData()
offices = sa.Table(
    "offices", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("city", sa.String(40), nullable=False),
    sa.Column("name", sa.String(80)),
)
persons = sa.Table(
    "persons", metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # serial / auto-increment
    sa.Column("national_id", sa.String(18), nullable=False),
    sa.Column("name", sa.String(80)),
    sa.Column("city", sa.String(40), nullable=False),
    sa.Column("office_id", sa.ForeignKey("offices.id")),
    sa.Column("enrolled_on", sa.Date),
)
CITIES = ["Taiyuan", "Datong", "Linfen"]
OFFICES = [{"id": 1, "city": "Taiyuan", "name": 'Taiyuan "Central", No. 1'},
           {"id": 2, "city": "Datong", "name": "Datong"},
           {"id": 3, "city": "Linfen", "name": None}]
# NULL and '' must stay apart; quotes, commas, newlines and non-ASCII must survive.
SPECIAL_NAMES = {1: None, 2: "", 3: "Li\nNa", 4: "王芳", 5: "O'Neil, Jr."}
PERSONS = [{"id": i, "national_id": f"14010019800101{i:04d}",
            "name": SPECIAL_NAMES.get(i, f"Person {i}"), "city": CITIES[i % 3],
            "office_id": i % 3 + 1,
            "enrolled_on": date(2020, 1, 1) + timedelta(days=i) if i % 7 else None}
           for i in range(1, 61)]
TAIYUAN = sum(1 for p in PERSONS if p["city"] == "Taiyuan")


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool)


def rows_of(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def execute(url: str, sql: str) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


@pytest.fixture
def new_database(scratch_database: Callable[..., str]) -> Callable[..., str]:
    """`new_database(kind, seed=True)` -> URL of a fresh database with our two tables."""
    def make(kind: str, seed: bool = True, tables: sa.MetaData = metadata) -> str:
        rows = {offices: OFFICES, persons: PERSONS} if seed else None
        return scratch_database(kind, tables, rows)
    return make


def context(make_context: Callable[..., StepContext], **urls: str) -> StepContext:
    return make_context({name: Target(database=DatabaseEndpoint(url=url))
                         for name, url in urls.items()})


def checked_manifest(directory: Path) -> dict[str, Any]:
    """A batch's manifest, once every file in it has the SHA-256 and size it states."""
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    for entry in manifest["tables"]:
        data = (directory / entry["file"]).read_bytes()
        assert (entry["sha256"], entry["bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
    return manifest


def write_refused(url: str, sql: str) -> str:
    """Run a write directly; return the error it got ('' when it went through)."""
    try:
        execute(url, sql)
    except sa.exc.DBAPIError as exc:
        return str(exc.orig)
    return ""


# -- freeze / unfreeze ---------------------------------------------------------------


def test_freeze_blocks_every_write_and_rerun_skips(kind: str, new_database: Any,
                                                   make_context: Any) -> None:
    url = new_database(kind)
    ctx = context(make_context, db=url)

    first = freeze(Freeze(target="db"), ctx)

    assert sorted(first["frozen"]) == ["offices", "persons"] and first["already_frozen"] == []
    assert first["verification"]["refused"] == 2
    assert "cutover freeze" in first["verification"]["message"]
    for sql in ("INSERT INTO offices (id, city) VALUES (9, 'Jinzhong')",
                "UPDATE persons SET name = 'x' WHERE id = 10",
                "DELETE FROM persons WHERE id = 11"):
        assert "cutover freeze" in write_refused(url, sql)
    if kind == "postgresql":  # statement-level triggers refuse TRUNCATE too
        assert "cutover freeze" in write_refused(url, "TRUNCATE persons")
    assert rows_of(url, "SELECT count(*) FROM persons") == [(60,)]  # reads still work

    second = freeze(Freeze(target="db"), ctx)

    assert second["frozen"] == [] and sorted(second["already_frozen"]) == ["offices", "persons"]
    assert "cutover freeze" in write_refused(url, "DELETE FROM offices WHERE id = 3")


def test_unfreeze_restores_writes_and_rerun_skips(kind: str, new_database: Any,
                                                  make_context: Any) -> None:
    url = new_database(kind)
    ctx = context(make_context, db=url)
    freeze(Freeze(target="db"), ctx)

    first = unfreeze(Unfreeze(target="db"), ctx)

    assert sorted(first["unfrozen"]) == ["offices", "persons"]
    assert write_refused(url, "UPDATE persons SET name = 'x' WHERE id = 10") == ""
    assert rows_of(url, "SELECT name FROM persons WHERE id = 10") == [("x",)]
    second = unfreeze(Unfreeze(target="db"), ctx)
    assert second["unfrozen"] == [] and sorted(second["already_unfrozen"]) == ["offices",
                                                                               "persons"]
    if kind == "postgresql":  # the shared trigger function goes with the last trigger
        assert rows_of(url, "SELECT count(*) FROM pg_proc "
                            "WHERE proname = 'cutover_freeze_refuse'") == [(0,)]


def test_freeze_only_named_tables(new_database: Any, make_context: Any) -> None:
    url = new_database("sqlite")

    evidence = freeze(Freeze(target="db", tables=["offices"]), context(make_context, db=url))

    assert evidence["frozen"] == ["offices"]
    assert "cutover freeze" in write_refused(url, "UPDATE offices SET name = 'x'")
    assert write_refused(url, "UPDATE persons SET name = 'x' WHERE id = 9") == ""


def test_freeze_completes_a_partly_frozen_table(new_database: Any, make_context: Any) -> None:
    url = new_database("sqlite")
    ctx = context(make_context, db=url)
    freeze(Freeze(target="db"), ctx)
    execute(url, "DROP TRIGGER cutover_freeze_persons_update")  # as if a crash came between

    evidence = freeze(Freeze(target="db"), ctx)

    assert evidence["frozen"] == ["persons"] and evidence["already_frozen"] == ["offices"]
    assert "cutover freeze" in write_refused(url, "UPDATE persons SET name = 'x'")


def test_freeze_that_does_not_block_fails_and_the_probe_leaves_no_row(
        new_database: Any, make_context: Any) -> None:
    url = new_database("sqlite")
    execute(url, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")  # accepts any insert
    for table in ("notes", "offices"):
        for op in ("insert", "update", "delete"):  # triggers with our names that block nothing
            execute(url, f"CREATE TRIGGER cutover_freeze_{table}_{op} BEFORE {op.upper()} "
                         f"ON {table} BEGIN SELECT 1; END")
    ctx = context(make_context, db=url)

    with pytest.raises(StepError, match="write to notes was not refused by the freeze "
                                        r"\(the write went through\)") as info:
        freeze(Freeze(target="db", tables=["notes"]), ctx)
    with pytest.raises(StepError, match=r"offices .* by the freeze \(NOT NULL constraint"):
        freeze(Freeze(target="db", tables=["offices"]), ctx)

    assert info.value.evidence["already_frozen"] == ["notes"]
    assert rows_of(url, "SELECT count(*) FROM notes") == [(0,)]  # the probe was rolled back


def test_freeze_unknown_table_fails(new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, db=new_database("sqlite"))
    with pytest.raises(StepError, match="no such table: payments"):
        freeze(Freeze(target="db", tables=["payments"]), ctx)


# -- checksum and query ----------------------------------------------------------------


def test_checksum_is_stable_and_sees_a_change(kind: str, new_database: Any, make_context: Any,
                                              facts: Any) -> None:
    url = new_database(kind)
    ctx = context(make_context, db=url)

    first = checksum(Checksum(target="db", save_as="baseline"), ctx)["checksums"]
    again = checksum(Checksum(target="db"), ctx)["checksums"]
    execute(url, "UPDATE persons SET name = 'Changed' WHERE id = 30")
    changed = checksum(Checksum(target="db", tables=["persons", "offices"]), ctx)["checksums"]

    assert first == again
    assert first["persons"]["rows"] == 60 and first["offices"]["rows"] == 3
    assert facts.get("baseline") == first
    assert changed["offices"] == first["offices"]
    assert changed["persons"]["rows"] == 60
    assert changed["persons"]["sha256"] != first["persons"]["sha256"]


@pytest.mark.postgres
@pytest.mark.mariadb
def test_same_data_gives_same_checksums_and_files_on_every_dialect(new_database: Any,
                                                                   make_context: Any) -> None:
    urls = {k: new_database(k) for k in ("sqlite", "postgresql", "mariadb")}
    ctx = context(make_context, **urls)

    sums = {k: checksum(Checksum(target=k), ctx)["checksums"] for k in urls}
    files = {}
    for k in urls:  # PostgreSQL through COPY, the others through the streaming cursor
        export(Export(target=k, batch=f"b-{k}"), ctx)
        files[k] = (ctx.workdir / "exports" / f"b-{k}" / "persons.csv").read_bytes()

    assert sums["sqlite"] == sums["postgresql"] == sums["mariadb"]
    assert files["sqlite"] == files["postgresql"] == files["mariadb"]


def test_query_keeps_200_rows_and_saves_them(new_database: Any, make_context: Any,
                                             facts: Any) -> None:
    ctx = context(make_context, db=new_database("sqlite"))

    few = query(Query(target="db", sql="SELECT id, name FROM offices ORDER BY id",
                      save_as="offices"), ctx)
    many = query(Query(target="db", sql="SELECT a.id FROM persons a, persons b"), ctx)

    assert few["columns"] == ["id", "name"] and few["truncated"] is False
    assert few["rows"] == [{"id": o["id"], "name": o["name"]} for o in OFFICES]
    assert facts.get("offices") == few["rows"]
    assert len(many["rows"]) == 200 and many["truncated"] is True


def test_query_statement_is_committed(kind: str, new_database: Any, make_context: Any) -> None:
    url = new_database(kind)
    evidence = query(Query(target="db", sql="UPDATE offices SET name = 'Renamed' WHERE id = 2"),
                     context(make_context, db=url))
    assert evidence["rows_affected"] == 1
    assert rows_of(url, "SELECT name FROM offices WHERE id = 2") == [("Renamed",)]


def test_bad_sql_is_a_step_error_with_its_cause(new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, db=new_database("sqlite"))
    with pytest.raises(StepError, match=r"^query on db: .*no such table: absent_table") as info:
        query(Query(target="db", sql="SELECT * FROM absent_table"), ctx)
    assert isinstance(info.value.__cause__, sa.exc.DBAPIError)


# -- sql check ---------------------------------------------------------------------------


def test_sql_check_passes_and_fails(kind: str, new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, db=new_database(kind))
    count = "select count(*) from persons where city = 'Taiyuan'"

    ok = sql_check(SqlCheck(target="db", query=count, equals=TAIYUAN), ctx)
    wrong = sql_check(SqlCheck(target="db", query=count, equals=0), ctx)
    ranged = sql_check(SqlCheck(target="db", query=count, min=1, max=TAIYUAN), ctx)
    too_few = sql_check(SqlCheck(target="db", query=count, min=TAIYUAN + 1), ctx)
    text_ = sql_check(SqlCheck(target="db", query="select city from offices where id = 2",
                               equals="Datong"), ctx)

    assert ok.passed and ok.summary == f"sql: {count} = {TAIYUAN} (expected {TAIYUAN})"
    assert not wrong.passed and wrong.observed == TAIYUAN and wrong.expected == {"equals": 0}
    assert wrong.summary == f"sql: {count} = {TAIYUAN} (expected 0)"
    assert ranged.passed and ranged.summary.endswith(f"(expected >= 1 and <= {TAIYUAN})")
    assert not too_few.passed
    assert text_.passed


def test_sql_check_bad_query_and_no_rows_fail_without_raising(new_database: Any,
                                                               make_context: Any) -> None:
    ctx = context(make_context, db=new_database("sqlite"))
    broken = sql_check(SqlCheck(target="db", query="select count(*) from nowhere", equals=0), ctx)
    empty = sql_check(SqlCheck(target="db", query="select id from offices where id = 99",
                               min=1), ctx)
    assert not broken.passed and "no such table: nowhere" in broken.summary
    assert not empty.passed and "returned no rows" in empty.summary


def test_sql_check_needs_an_expectation() -> None:
    with pytest.raises(ValueError, match="at least one of equals, min, max"):
        SqlCheck(target="db", query="select 1")


# -- connections -------------------------------------------------------------------------


def test_unreachable_server_raises_connect_error_without_the_password(
        make_context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_TEST_DB_PASSWORD", "s3cret-value")
    ctx = make_context({"db": Target(database=DatabaseEndpoint(
        url="postgresql://cutover@127.0.0.1:1/none",  # bare postgresql:// -> psycopg 3
        password=SecretRef(secret="env:CUTOVER_TEST_DB_PASSWORD")))})

    assert _db.database_url(ctx, "db").password == "s3cret-value"
    with pytest.raises(ConnectError, match="cannot connect to database of db") as info:
        checksum(Checksum(target="db"), ctx)
    assert "s3cret-value" not in str(info.value)
    with pytest.raises(ConnectError):
        sql_check(SqlCheck(target="db", query="select 1", equals=1), ctx)


def test_missing_sqlite_file_is_a_connect_error(tmp_path: Path, make_context: Any) -> None:
    ctx = context(make_context, db=f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(ConnectError, match="absent.db does not exist"):
        freeze(Freeze(target="db"), ctx)
    assert not (tmp_path / "absent.db").exists()


def test_target_without_database_is_a_step_error(make_context: Any) -> None:
    ctx = make_context({"web": Target()})
    with pytest.raises(StepError, match="target 'web' has no database endpoint"):
        checksum(Checksum(target="web"), ctx)


# -- export ----------------------------------------------------------------------------------


def test_export_writes_csv_files_and_manifest(kind: str, new_database: Any,
                                              make_context: Any) -> None:
    ctx = context(make_context, old=new_database(kind))

    evidence = export(Export(target="old", batch="nov"), ctx)

    directory = ctx.workdir / "exports" / "nov"
    manifest = checked_manifest(directory)
    assert evidence["skipped"] is False
    assert set(manifest) == {"batch", "source", "created_at", "tables"}
    assert (manifest["batch"], manifest["source"]) == ("nov", "old")
    assert manifest["created_at"].startswith("2023-11-30T18:00:00")
    assert [t["name"] for t in manifest["tables"]] == ["offices", "persons"]  # parents first
    for entry in manifest["tables"]:
        assert set(entry) == {"name", "file", "rows", "sha256", "bytes", "where"}
        assert b"\r\n" not in (directory / entry["file"]).read_bytes()
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "offices.csv",
                                                           "persons.csv"]
    text_ = (directory / "persons.csv").read_text(encoding="utf-8")
    parsed = list(csv.reader(io.StringIO(text_, newline="")))
    assert parsed[0] == ["id", "national_id", "name", "city", "office_id", "enrolled_on"]
    assert len(parsed) == 61 and manifest["tables"][1]["rows"] == 60
    assert [r[2] for r in parsed[3:6]] == ["Li\nNa", "王芳", "O'Neil, Jr."]
    assert text_.splitlines()[1].startswith("1,140100198001010001,,")  # NULL: unquoted empty
    assert text_.splitlines()[2].startswith('2,140100198001010002,"",')  # '': quoted empty
    assert (directory / "offices.csv").read_text(encoding="utf-8").splitlines()[1] == \
        '1,Taiyuan,"Taiyuan ""Central"", No. 1"'


def test_export_rerun_leaves_a_verified_batch_alone(new_database: Any,
                                                    make_context: Any) -> None:
    ctx = context(make_context, old=new_database("sqlite"))
    export(Export(target="old", batch="nov"), ctx)
    directory = ctx.workdir / "exports" / "nov"
    mtimes = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}

    again = export(Export(target="old", batch="nov"), ctx)

    assert again["skipped"] is True and "every file matches" in again["reason"]
    assert {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} == mtimes


def test_export_rerun_replaces_a_damaged_batch(new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, old=new_database("sqlite"))
    export(Export(target="old", batch="nov"), ctx)
    target = ctx.workdir / "exports" / "nov" / "persons.csv"
    good = target.read_bytes()
    target.write_bytes(good.replace(b"Person 7", b"Person X"))

    again = export(Export(target="old", batch="nov"), ctx)

    assert again["skipped"] is False and target.read_bytes() == good


def test_export_with_where_filter(kind: str, new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, old=new_database(kind))
    # `%` and `:00` in literals must reach the server untouched on every driver.
    where = "city = 'Taiyuan' AND name LIKE '%' AND national_id <> '10:00'"
    spec = Export(target="old", batch="taiyuan",
                  tables=["offices", {"name": "persons", "where": where}])

    export(spec, ctx)

    directory = ctx.workdir / "exports" / "taiyuan"
    manifest = checked_manifest(directory)
    entry = manifest["tables"][1]
    assert (entry["rows"], entry["where"]) == (TAIYUAN, where)
    parsed = list(csv.reader((directory / "persons.csv").open(encoding="utf-8", newline="")))
    assert len(parsed) == TAIYUAN + 1 and {r[3] for r in parsed[1:]} == {"Taiyuan"}
    assert manifest["tables"][0]["rows"] == 3 and manifest["tables"][0]["where"] is None
    # A different filter is a different export, not a skip.
    wider = export(Export(target="old", batch="taiyuan", tables=["offices", "persons"]), ctx)
    assert wider["skipped"] is False and wider["table"][1]["rows"] == 60


# -- load ------------------------------------------------------------------------------------


def test_load_round_trip_then_rerun_skips(kind: str, new_database: Any,
                                          make_context: Any) -> None:
    ctx = context(make_context, old=new_database(kind), new=new_database(kind, seed=False))
    export(Export(target="old", batch="nov"), ctx)

    first = load(Load(target="new", batch="nov"), ctx)
    second = load(Load(target="new", batch="nov"), ctx)

    assert first["loaded"] == ["offices", "persons"] and first["skipped"] == []
    assert checksum(Checksum(target="new"), ctx)["checksums"] == \
        checksum(Checksum(target="old"), ctx)["checksums"]
    assert second["loaded"] == [] and second["skipped"] == ["offices", "persons"]
    # New rows on the new system get fresh ids (PostgreSQL: the sequence was moved on).
    execute(ctx.profile.targets["new"].database.url,
            "INSERT INTO persons (national_id, city) VALUES ('x', 'Datong')")
    assert rows_of(ctx.profile.targets["new"].database.url,
                   "SELECT id FROM persons WHERE national_id = 'x'") == [(61,)]


def test_load_replace_overwrites_changed_rows(new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, old=new_database("sqlite"), new=new_database("sqlite"))
    export(Export(target="old", batch="nov"), ctx)
    execute(ctx.profile.targets["new"].database.url, "UPDATE persons SET name = 'stale'")

    evidence = load(Load(target="new", batch="nov"), ctx)

    assert evidence["loaded"] == ["persons"] and evidence["skipped"] == ["offices"]
    assert checksum(Checksum(target="new"), ctx)["checksums"] == \
        checksum(Checksum(target="old"), ctx)["checksums"]


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgres)])
def test_load_is_one_transaction(dialect: str, new_database: Any, make_context: Any) -> None:
    narrow = sa.MetaData()  # persons without enrolled_on: its load must fail
    offices.to_metadata(narrow)
    sa.Table("persons", narrow, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("national_id", sa.String(18)), sa.Column("name", sa.String(80)),
             sa.Column("city", sa.String(40)), sa.Column("office_id", sa.Integer))
    ctx = context(make_context, old=new_database("sqlite"),
                  new=new_database(dialect, seed=False, tables=narrow))
    export(Export(target="old", batch="nov"), ctx)

    with pytest.raises(StepError, match="^load on new: .*enrolled_on"):
        load(Load(target="new", batch="nov"), ctx)

    assert rows_of(ctx.profile.targets["new"].database.url, "SELECT count(*) FROM offices") \
        == [(0,)]


def test_load_refuses_a_damaged_batch(new_database: Any, make_context: Any) -> None:
    ctx = context(make_context, old=new_database("sqlite"), new=new_database("sqlite", False))
    export(Export(target="old", batch="nov"), ctx)
    (ctx.workdir / "exports" / "nov" / "offices.csv").write_text("id,city,name\n9,X,Y\n")

    with pytest.raises(StepError, match="batch nov: offices: .*export it again"):
        load(Load(target="new", batch="nov"), ctx)
    with pytest.raises(StepError, match="batch gone: no manifest.json"):
        load(Load(target="new", batch="gone"), ctx)


# -- backup ----------------------------------------------------------------------------------


def test_sqlite_backup_is_a_consistent_copy_and_rerun_skips(new_database: Any,
                                                            make_context: Any) -> None:
    ctx = context(make_context, old=new_database("sqlite"))

    first = backup(Backup(target="old", name="before"), ctx)

    path = ctx.workdir / "backups" / "before.db"
    assert first["skipped"] is False and first["path"] == str(path)
    assert first["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (ctx.workdir / "backups" / "before.db.sha256").read_text().split()[0] == \
        first["sha256"]
    copy_ctx = context(make_context, old=ctx.profile.targets["old"].database.url,
                       copy=f"sqlite:///{path}")
    assert checksum(Checksum(target="copy"), copy_ctx)["checksums"] == \
        checksum(Checksum(target="old"), copy_ctx)["checksums"]
    mtime = path.stat().st_mtime_ns

    second = backup(Backup(target="old", name="before"), ctx)

    assert second["skipped"] is True and path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgres),
                                     pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_server_backup_is_csv_per_table_with_manifest(dialect: str, new_database: Any,
                                                      make_context: Any) -> None:
    ctx = context(make_context, old=new_database(dialect))

    evidence = backup(Backup(target="old", name="before"), ctx)

    manifest = checked_manifest(ctx.workdir / "backups" / "before")
    assert evidence["skipped"] is False
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == {"offices": 3, "persons": 60}
    assert backup(Backup(target="old", name="before"), ctx)["skipped"] is True
