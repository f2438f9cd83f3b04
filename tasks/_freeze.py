"""Freeze triggers: the SQL, per dialect, that makes tables read-only for `database.freeze`.

- PostgreSQL: one statement-level trigger `cutover_freeze` per table (so TRUNCATE
  and writes touching no row are refused too), calling one shared function;
- SQLite and MariaDB: a BEFORE INSERT / UPDATE / DELETE trigger per table and
  operation, named `cutover_freeze_<table>_<op>`.
Every trigger's error message carries FREEZE_MARK; `probe_writes` proves the
freeze by looking for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from tasks._db import Database, one_line, quote, run_sql

# The marker every freeze trigger's error message carries; verification looks for it.
FREEZE_MARK = "cutover freeze"
_OPS = ("INSERT", "UPDATE", "DELETE")
_PG_TRIGGER = "cutover_freeze"  # PG trigger names are per table: one name serves all
_PG_FUNCTION = "cutover_freeze_refuse"


def _trigger_name(table: str, op: str) -> str:
    name = f"cutover_freeze_{table}_{op.lower()}"
    if len(name) > 64:  # MariaDB's identifier limit
        name = f"cutover_freeze_{hashlib.sha1(table.encode()).hexdigest()[:16]}_{op.lower()}"
    return name


def _wanted_triggers(conn: Connection, table: str) -> set[str]:
    if conn.dialect.name == "postgresql":
        return {_PG_TRIGGER}
    return {_trigger_name(table, op) for op in _OPS}


def freeze_triggers(conn: Connection, table: str) -> set[str]:
    """The freeze triggers `table` carries now."""
    if conn.dialect.name == "postgresql":
        sql, name = "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:t)", \
            quote(conn, table)
    elif conn.dialect.name == "sqlite":
        sql, name = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t", table
    else:
        sql, name = ("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                     "WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = :t"), table
    return set(conn.execute(text(sql), {"t": name}).scalars()) & _wanted_triggers(conn, table)


def freeze_table(conn: Connection, table: str) -> bool:
    """Create the freeze triggers `table` lacks; False when it had them all."""
    missing = _wanted_triggers(conn, table) - freeze_triggers(conn, table)
    if not missing:
        return False
    qt = quote(conn, table)
    if conn.dialect.name == "postgresql":
        # Statement-level, so even a write touching no row (and TRUNCATE) is refused.
        run_sql(conn, f"CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
                f"'{FREEZE_MARK}: table % is read-only (% refused)', TG_TABLE_NAME, TG_OP; "
                "END $$")
        run_sql(conn, f"CREATE TRIGGER {_PG_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR "
                f"TRUNCATE ON {qt} FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()")
        return True
    message = f"{FREEZE_MARK}: table {table} is read-only"[:120].replace("'", "''")
    for op in _OPS:
        name = _trigger_name(table, op)
        if name not in missing:
            continue
        if conn.dialect.name == "sqlite":
            body = f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        else:
            body = f"FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'"
        run_sql(conn, f"CREATE TRIGGER {quote(conn, name)} BEFORE {op} ON {qt} {body}")
    return True


def unfreeze_table(conn: Connection, table: str) -> bool:
    """Drop the freeze triggers of `table`; False when it had none."""
    present = freeze_triggers(conn, table)
    for name in sorted(present):
        if conn.dialect.name == "postgresql":
            run_sql(conn, f"DROP TRIGGER IF EXISTS {name} ON {quote(conn, table)}")
        else:
            run_sql(conn, f"DROP TRIGGER IF EXISTS {quote(conn, name)}")
    if conn.dialect.name == "postgresql" and not conn.execute(text(
            "SELECT count(*) FROM pg_trigger WHERE tgname = :n"), {"n": _PG_TRIGGER}).scalar():
        run_sql(conn, f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()")
    return bool(present)


def probe_writes(db: Database, tables: Sequence[str]) -> dict[str, str]:
    """Try one insert per table, always rolled back; the error each got ('' = none)."""
    refusals = {}
    with db.connect("freeze verification") as conn:
        for table in tables:
            values = "() VALUES ()" if db.family == "mysql" else "DEFAULT VALUES"
            transaction = conn.begin()
            try:
                run_sql(conn, f"INSERT INTO {quote(conn, table)} {values}")
                refusals[table] = ""
            except SQLAlchemyError as exc:
                refusals[table] = one_line(exc)
            finally:
                transaction.rollback()
    return refusals
