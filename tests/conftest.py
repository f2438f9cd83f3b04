"""Shared fixtures: the embedded sandbox, real servers on 127.0.0.1 free ports, and
throw-away databases (SQLite files, or `cutover_test_*` databases on the PostgreSQL
and MariaDB servers on 127.0.0.1, dropped afterwards; a server that does not answer
skips its tests with the reason).

`sandbox` is started once per session; tests that change its state (stop a
channel, set a fault, freeze a database) use `fresh_sandbox` instead, which
costs a fraction of a second because the data builds in about 0.15 s.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from sandbox.runtime import Sandbox
from sandbox.testing import running_sandbox
from tasks import _db

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
Rows = Mapping[sa.Table, list[dict[str, Any]]]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox for the whole session; treat it as read-only."""
    with running_sandbox(tmp_path_factory.mktemp("sandbox")) as running:
        yield running


@pytest.fixture
def fresh_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox of its own for a test that changes state."""
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running


def _server(kind: str) -> sa.Connection:
    engine = sa.create_engine(
        SERVERS[kind],
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )
    try:
        return engine.connect()
    except sa.exc.OperationalError as exc:
        pytest.skip(
            f"{kind} server not reachable at {engine.url.host}:{engine.url.port}: "
            f"{_db.one_line(exc)}"
        )


@contextmanager
def _fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of `kind`, removed afterwards; yields its SQLAlchemy URL."""
    name = f"cutover_test_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / (name + '.db')}"
        return
    with _server(kind) as conn:
        charset = " CHARACTER SET utf8mb4" if kind == "mariadb" else ""
        conn.exec_driver_sql(f"CREATE DATABASE {name}{charset}")
        try:
            yield str(sa.make_url(SERVERS[kind]).set(database=name))
        finally:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")


@pytest.fixture
def scratch_database(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`scratch_database(kind, tables, rows={table: [row, ...]})` -> URL of a fresh
    database of `kind` (sqlite, postgresql, mariadb) holding `tables` and `rows`."""
    with ExitStack() as stack:

        def make(kind: str, tables: sa.MetaData, rows: Rows | None = None) -> str:
            url = stack.enter_context(_fresh_database(kind, tmp_path))
            engine = sa.create_engine(url, poolclass=NullPool)
            try:
                with engine.begin() as conn:
                    tables.create_all(conn)
                    for table, values in (rows or {}).items():
                        conn.execute(table.insert(), values)
            finally:
                engine.dispose()
            return url

        yield make


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def kind(request: pytest.FixtureRequest) -> str:
    """Each database dialect in turn."""
    return request.param
