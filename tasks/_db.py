"""Database plumbing for the `database.*`, `sql` and `reconcile.*` step types
(the freeze triggers are in `tasks._freeze`).

Engines are built per step from the profile and disposed afterwards (no caches:
a step may run in any worker). Foreign exceptions (SQLAlchemy, the DBAPI
drivers, OSError) are translated here, once, into StepError / ConnectError.

CSV is written the way PostgreSQL's `COPY ... CSV` writes it (NULL is an empty
unquoted field, an empty string is `""`, quoting only when needed), so the fast
path on PostgreSQL and the streaming path elsewhere produce the same bytes for
the same data, and the file hash is a property of the data.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from cutover.errors import ConnectError, StepError
from cutover.steps import StepContext

# Rows fetched per round trip when streaming; large enough to amortise the
# round trip, small enough to keep memory flat on million-row tables.
CHUNK_ROWS = 5000

_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql",
                    "mariadb": "mariadb+pymysql"}


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception (the DBAPI error inside SQLAlchemy's wrapper)."""
    inner = getattr(exc, "orig", None) or exc
    first = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def database_url(ctx: StepContext, name: str) -> URL:
    """The target's SQLAlchemy URL with its password resolved and an installed driver."""
    try:
        endpoint = ctx.target(name).database
    except KeyError as exc:
        raise StepError(str(exc.args[0])) from exc
    if endpoint is None:
        raise StepError(f"target {name!r} has no database endpoint in the profile")
    try:
        url = make_url(endpoint.url)
    except SQLAlchemyError as exc:
        raise StepError(f"target {name!r}: bad database URL: {one_line(exc)}") from exc
    # A bare `postgresql://` would pick psycopg2, which we do not ship.
    url = url.set(drivername=_DEFAULT_DRIVERS.get(url.drivername, url.drivername))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database).expanduser()
        path = path.resolve()  # relative to where the command runs, like every profile path
        if not path.is_file():
            # sqlite3 would silently create an empty database instead.
            raise ConnectError(f"target {name!r}: SQLite database {path} does not exist")
        url = url.set(database=str(path))
    if endpoint.password is not None:
        try:
            url = url.set(password=ctx.secret(endpoint.password))
        except KeyError as exc:
            raise StepError(f"target {name!r}: {exc.args[0]}") from exc
    return url


@dataclass
class Database:
    """One target's engine for the duration of one step."""

    target: str
    engine: Engine

    @property
    def family(self) -> str:
        """sqlite, postgresql or mysql (MariaDB included)."""
        name = self.engine.dialect.name
        return "mysql" if name in ("mysql", "mariadb") else name

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Translate foreign exceptions raised while `doing` into StepError."""
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            yield
        except StepError:
            raise
        except (SQLAlchemyError, dbapi_error, OSError, UnicodeError, csv.Error) as exc:
            raise StepError(f"{doing} on {self.target}: {one_line(exc)}") from exc

    @contextmanager
    def connect(self, doing: str, *, snapshot: bool = False) -> Iterator[Connection]:
        """A connection; `snapshot` reads every table as of one moment (PG, MariaDB)."""
        try:
            conn = self.engine.connect()
        except (SQLAlchemyError, OSError) as exc:
            where = self.engine.url.render_as_string(hide_password=True)
            raise ConnectError(f"cannot connect to database of {self.target} ({where}): "
                               f"{one_line(exc)}") from exc
        with conn, self.errors(doing):
            if snapshot and self.family != "sqlite":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn


@contextmanager
def open_database(ctx: StepContext, name: str) -> Iterator[Database]:
    url = database_url(ctx, name)
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend in ("postgresql", "mysql", "mariadb"):
        connect_args["connect_timeout"] = 10  # an unreachable host fails the step, not hangs it
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (SQLAlchemyError, ImportError) as exc:
        raise StepError(f"target {name!r}: cannot use database URL: {one_line(exc)}") from exc
    try:
        yield Database(name, engine)
    finally:
        engine.dispose()


# -- introspection and SQL -------------------------------------------------------


def quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def table_names(conn: Connection) -> list[str]:
    """Every table, parents before children (so loads satisfy foreign keys)."""
    return [t for t, _ in inspect(conn).get_sorted_table_and_fkc_names() if t]


def require_tables(conn: Connection, wanted: Sequence[str] | None) -> list[str]:
    existing = table_names(conn)
    if wanted is None:
        return existing
    missing = [t for t in wanted if t not in existing]
    if missing:
        raise StepError(f"no such table: {', '.join(missing)}")
    return list(wanted)


def columns(conn: Connection, table: str) -> list[str]:
    return [c["name"] for c in inspect(conn).get_columns(table)]


def select_sql(conn: Connection, table: str, where: str | None = None) -> str:
    """SELECT every column ordered by primary key (all columns when there is none)."""
    cols = columns(conn, table)
    order = inspect(conn).get_pk_constraint(table)["constrained_columns"] or cols
    sql = f"SELECT {', '.join(quote(conn, c) for c in cols)} FROM {quote(conn, table)}"
    if where:
        sql += f" WHERE ({where})"
    return f"{sql} ORDER BY {', '.join(quote(conn, c) for c in order)}"


def run_sql(conn: Connection, sql: str) -> Any:
    """Execute runbook-written SQL verbatim: no bind-parameter parsing, so `%` and
    `'10:00'` inside literals mean what they say on every driver."""
    return conn.exec_driver_sql(sql, execution_options={"no_parameters": True})


def count_rows(conn: Connection, table: str, where: str | None = None) -> int:
    sql = f"SELECT count(*) FROM {quote(conn, table)}" + (f" WHERE ({where})" if where else "")
    return int(run_sql(conn, sql).scalar_one())


def stream_rows(conn: Connection, sql: str) -> Iterator[Sequence[Sequence[Any]]]:
    """Batches of rows through a server-side cursor (stream_results)."""
    result = conn.exec_driver_sql(sql, execution_options={
        "stream_results": True, "yield_per": CHUNK_ROWS, "no_parameters": True})
    yield from result.partitions()


# -- CSV ----------------------------------------------------------------------

_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def text_value(value: Any) -> str | None:
    """The canonical text of one value, as PostgreSQL prints it; None for NULL."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # aware times compare in UTC, whatever the session zone
            value = value.astimezone(UTC)
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def _field(value: Any) -> str:
    text_ = text_value(value)
    if text_ is None:
        return ""
    if text_ == "" or text_ == "\\." or _NEEDS_QUOTES.search(text_):
        return '"' + text_.replace('"', '""') + '"'
    return text_


def csv_line(values: Sequence[Any]) -> str:
    return ",".join(map(_field, values)) + "\n"


_QUOTED = re.compile(r'"((?:[^"]|"")*)"(?=,|\Z)|([^,"]*)(?=,|\Z)', re.DOTALL)


def parse_record(record: str) -> list[str | None]:
    """One CSV record (without its line end) -> fields; unquoted empty is NULL."""
    if '"' not in record:
        return [f if f else None for f in record.split(",")]
    fields: list[str | None] = []
    pos = 0
    while True:
        match = _QUOTED.match(record, pos)
        if match is None:
            raise StepError(f"malformed CSV record near {record[pos:pos + 40]!r}")
        quoted, plain = match.groups()
        fields.append(quoted.replace('""', '"') if quoted is not None else (plain or None))
        pos = match.end()
        if pos >= len(record):
            return fields
        pos += 1  # the comma


def read_records(file: IO[bytes]) -> Iterator[list[str | None]]:
    """Records of a CSV file, the header first; quoted fields may span lines."""
    pending = b""
    for line in file:
        pending += line
        if pending.count(b'"') % 2:  # inside a quoted field: the record goes on
            continue
        yield parse_record(pending.removesuffix(b"\n").decode("utf-8"))
        pending = b""
    if pending:
        raise StepError("CSV file ends inside a quoted field")


class Sink:
    """Counts and hashes bytes on their way to an optional file."""

    def __init__(self, file: IO[bytes] | None = None) -> None:
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self._file = file

    def write(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        self.bytes += len(data)
        if self._file is not None:
            self._file.write(data)


def copy_out(conn: Connection, table: str, where: str | None, sink: Sink) -> int:
    """Write `table` (filtered, ordered by primary key) as CSV to `sink`; return its rows."""
    sql = select_sql(conn, table, where)
    if conn.dialect.name == "postgresql":
        # COPY is the fast path: the server formats the CSV, we only move bytes.
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true, "
                          "ENCODING 'UTF8')") as copy:
                # libpq hands over one row at a time: batch them so hashing and
                # writing happen per megabyte, not per row.
                buffer = bytearray()
                for chunk in copy:
                    buffer += chunk
                    if len(buffer) >= 1 << 20:
                        sink.write(buffer)
                        buffer.clear()
                sink.write(buffer)
            return cur.rowcount
    sink.write(csv_line(columns(conn, table)).encode("utf-8"))
    rows = 0
    for batch in stream_rows(conn, sql):
        sink.write("".join(map(csv_line, batch)).encode("utf-8"))
        rows += len(batch)
    return rows


def table_digest(conn: Connection, table: str) -> dict[str, Any]:
    """Rows and SHA-256 of the canonical CSV (header + rows by primary key).

    Values are formatted in Python from the driver's typed values, never by the
    server, so the same data gives the same hash on SQLite, PostgreSQL and MariaDB
    as long as the column types agree."""
    digest = hashlib.sha256(csv_line(columns(conn, table)).encode("utf-8"))
    rows = 0
    for batch in stream_rows(conn, select_sql(conn, table)):
        digest.update("".join(map(csv_line, batch)).encode("utf-8"))
        rows += len(batch)
    return {"rows": rows, "sha256": digest.hexdigest()}


def copy_in(conn: Connection, table: str, path: Path) -> int:
    """Insert the rows of a CSV file (header names the columns); return their number."""
    with path.open("rb") as file:
        header = file.readline().removesuffix(b"\n").decode("utf-8")
        cols = ", ".join(quote(conn, c or "") for c in parse_record(header))
        if conn.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                with cur.copy(f"COPY {quote(conn, table)} ({cols}) FROM STDIN WITH "
                              "(FORMAT csv, ENCODING 'UTF8')") as copy:
                    while chunk := file.read(1 << 20):
                        copy.write(chunk)
                return cur.rowcount
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        width = cols.count(", ") + 1
        sql = f"INSERT INTO {quote(conn, table)} ({cols}) VALUES ({', '.join([mark] * width)})"
        rows = 0
        batch: list[tuple[str | None, ...]] = []
        for record in read_records(file):
            batch.append(tuple(record))
            if len(batch) == CHUNK_ROWS:
                conn.exec_driver_sql(sql, batch)
                rows, batch = rows + len(batch), []
        if batch:
            conn.exec_driver_sql(sql, batch)
        return rows + len(batch)


def reset_sequences(conn: Connection, table: str) -> None:
    """PostgreSQL: move serial/identity sequences past the loaded ids, or the next
    insert on the new system collides with a loaded row."""
    if conn.dialect.name != "postgresql":
        return  # SQLite and MariaDB derive the next id from the data
    qualified = quote(conn, table)
    found = conn.execute(text(
        "SELECT a.attname, pg_get_serial_sequence(:t, a.attname) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped"),
        {"t": qualified}).all()
    for column, sequence in found:
        if sequence:
            conn.execute(text(f"SELECT setval(:s, coalesce((SELECT max({quote(conn, column)}) "
                              f"FROM {qualified}), 0) + 1, false)"), {"s": sequence})
