"""The ledger: the business record of a cutover.

Every execution, every step event with its evidence, every human decision and
every named fact goes here, one transaction per record, so that a killed run
resumes exactly where it stopped and the final report can be signed. Prefect's
own database is operational state; this is the record of what was done.

Events of one execution form a hash chain (each event's hash covers the previous
hash and its own content), so an edited or deleted record is detected by
`verify_chain`.

SQLite by default; any SQLAlchemy URL in production.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cutover.errors import LedgerError

metadata = sa.MetaData()

executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.String(120), primary_key=True),
    sa.Column("runbook", sa.String(200), nullable=False),
    sa.Column("runbook_path", sa.Text, nullable=False),
    sa.Column("profile", sa.String(200), nullable=False),
    sa.Column("profile_path", sa.Text, nullable=False),
    sa.Column("mode", sa.String(20), nullable=False),  # run | rehearse
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("workdir", sa.Text, nullable=False),
    sa.Column("clock_now", sa.String(40)),  # last clock reading, for rehearsal resume
    sa.Column("flow_run_id", sa.String(40)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("execution_id", sa.String(120), sa.ForeignKey("executions.id"), nullable=False),
    sa.Column("runbook", sa.String(200), nullable=False),
    sa.Column("phase_id", sa.String(120)),
    sa.Column("step_id", sa.String(120)),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("clock_at", sa.String(40), nullable=False),  # the run's clock (virtual in rehearsal)
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),  # wall clock
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_events_execution_step", "execution_id", "runbook", "step_id"),
)

facts = sa.Table(
    "facts",
    metadata,
    sa.Column("execution_id", sa.String(120), sa.ForeignKey("executions.id"), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

GENESIS = "0" * 64
FINISHED = ("completed", "rolled-back", "rollback-failed", "cancelled")


@dataclass(frozen=True)
class Execution:
    id: str
    runbook: str
    runbook_path: str
    profile: str
    profile_path: str
    mode: str
    status: str
    options: dict[str, Any]
    workdir: str
    clock_now: str | None
    flow_run_id: str | None
    started_at: datetime
    ended_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class Event:
    seq: int
    execution_id: str
    runbook: str
    phase_id: str | None
    step_id: str | None
    kind: str
    clock_at: str
    recorded_at: datetime
    data: dict[str, Any]
    prev_hash: str
    hash: str


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def _event_hash(prev_hash: str, row: dict[str, Any]) -> str:
    content = {
        k: row[k]
        for k in ("execution_id", "runbook", "phase_id", "step_id", "kind", "clock_at", "data")
    }
    return hashlib.sha256((prev_hash + _canonical(content)).encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_url(home: Path) -> str:
    return f"sqlite:///{home / 'ledger.db'}"


class Ledger:
    """Reads and writes the ledger at one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._engine = _make_engine(url)
            _create_tables(self._engine)
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            shown = sa.engine.make_url(url).render_as_string(hide_password=True)
            raise LedgerError(f"cannot open the ledger {shown}: {exc}") from exc

    def close(self) -> None:
        self._engine.dispose()

    # -- executions --------------------------------------------------------------

    def create_execution(
        self,
        *,
        execution_id: str,
        runbook: str,
        runbook_path: str,
        profile: str,
        profile_path: str,
        mode: str,
        options: dict[str, Any],
        workdir: str,
    ) -> Execution:
        row = dict(
            id=execution_id,
            runbook=runbook,
            runbook_path=runbook_path,
            profile=profile,
            profile_path=profile_path,
            mode=mode,
            status="running",
            options=options,
            workdir=workdir,
            clock_now=None,
            flow_run_id=None,
            started_at=_utcnow(),
            ended_at=None,
        )
        with self._engine.begin() as conn:
            if conn.execute(
                sa.select(executions.c.id).where(executions.c.id == execution_id)
            ).first():
                raise LedgerError(f"execution {execution_id} already exists")
            conn.execute(executions.insert().values(**row))
        return Execution(**row)

    def execution(self, execution_id: str) -> Execution:
        with self._engine.connect() as conn:
            row = (
                conn.execute(sa.select(executions).where(executions.c.id == execution_id))
                .mappings()
                .first()
            )
        if row is None:
            raise LedgerError(f"no execution {execution_id!r} in the ledger {self.url}")
        return Execution(**row)

    def executions(self) -> list[Execution]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(executions).order_by(executions.c.started_at)).mappings()
            return [Execution(**row) for row in rows]

    def find_unfinished(self, runbook: str, profile: str, mode: str) -> Execution | None:
        """The latest execution of this runbook on this profile that did not finish."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(executions)
                    .where(
                        executions.c.runbook == runbook,
                        executions.c.profile == profile,
                        executions.c.mode == mode,
                        executions.c.status.not_in(FINISHED),
                    )
                    .order_by(executions.c.started_at.desc())
                )
                .mappings()
                .first()
            )
        return None if row is None else Execution(**row)

    def update_execution(self, execution_id: str, **values: Any) -> None:
        allowed = {"status", "clock_now", "flow_run_id", "ended_at", "options"}
        if not set(values) <= allowed:
            raise LedgerError(f"cannot update {sorted(set(values) - allowed)} of an execution")
        with self._engine.begin() as conn:
            conn.execute(
                executions.update().where(executions.c.id == execution_id).values(**values)
            )

    # -- events ------------------------------------------------------------------

    def record(
        self,
        execution_id: str,
        kind: str,
        *,
        runbook: str,
        clock_at: str,
        phase_id: str | None = None,
        step_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Append one event, chained to the previous one, in its own transaction."""
        row: dict[str, Any] = dict(
            execution_id=execution_id,
            runbook=runbook,
            phase_id=phase_id,
            step_id=step_id,
            kind=kind,
            clock_at=clock_at,
            recorded_at=_utcnow(),
            data=json.loads(_canonical(data or {})),
        )
        with self._engine.begin() as conn:
            prev = conn.execute(
                sa.select(events.c.hash)
                .where(events.c.execution_id == execution_id)
                .order_by(events.c.seq.desc())
                .limit(1)
            ).scalar()
            row["prev_hash"] = prev or GENESIS
            row["hash"] = _event_hash(row["prev_hash"], row)
            seq = conn.execute(events.insert().values(**row)).inserted_primary_key[0]
        return Event(seq=seq, **row)

    def events(
        self, execution_id: str, *, runbook: str | None = None, step_id: str | None = None
    ) -> list[Event]:
        query = sa.select(events).where(events.c.execution_id == execution_id)
        if runbook is not None:
            query = query.where(events.c.runbook == runbook)
        if step_id is not None:
            query = query.where(events.c.step_id == step_id)
        with self._engine.connect() as conn:
            return [Event(**row) for row in conn.execute(query.order_by(events.c.seq)).mappings()]

    def step_kinds(self, execution_id: str, runbook: str) -> dict[str, set[str]]:
        """For each step: the set of event kinds recorded for it."""
        query = sa.select(events.c.step_id, events.c.kind).where(
            events.c.execution_id == execution_id,
            events.c.runbook == runbook,
            events.c.step_id.is_not(None),
        )
        kinds: dict[str, set[str]] = {}
        with self._engine.connect() as conn:
            for step_id, kind in conn.execute(query):
                kinds.setdefault(step_id, set()).add(kind)
        return kinds

    def verify_chain(self, execution_id: str) -> tuple[bool, str]:
        """Recompute the hash chain; returns (intact, head hash or the first bad seq)."""
        prev = GENESIS
        for event in self.events(execution_id):
            row = event.__dict__
            if event.prev_hash != prev or _event_hash(prev, row) != event.hash:
                return False, f"event {event.seq} does not match the chain"
            prev = event.hash
        return True, prev

    # -- facts -------------------------------------------------------------------

    def facts(self, execution_id: str) -> LedgerFacts:
        return LedgerFacts(self, execution_id)

    def get_fact(self, execution_id: str, name: str) -> Any:
        with self._engine.connect() as conn:
            return conn.execute(
                sa.select(facts.c.value).where(
                    facts.c.execution_id == execution_id, facts.c.name == name
                )
            ).scalar()

    def put_fact(self, execution_id: str, name: str, value: Any) -> None:
        value = json.loads(_canonical(value))
        with self._engine.begin() as conn:
            conn.execute(
                facts.delete().where(facts.c.execution_id == execution_id, facts.c.name == name)
            )
            conn.execute(
                facts.insert().values(
                    execution_id=execution_id, name=name, value=value, recorded_at=_utcnow()
                )
            )


class LedgerFacts:
    """The `cutover.steps.Facts` of one execution, kept in the ledger."""

    def __init__(self, ledger: Ledger, execution_id: str) -> None:
        self._ledger = ledger
        self._execution_id = execution_id

    def get(self, name: str) -> Any:
        return self._ledger.get_fact(self._execution_id, name)

    def put(self, name: str, value: Any) -> None:
        self._ledger.put_fact(self._execution_id, name, value)


def _create_tables(engine: Engine, attempts: int = 10) -> None:
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except sa.exc.OperationalError:
            # Another process created a table between our check and our CREATE (two
            # commands opening a fresh SQLite ledger at once). Each round finds more of
            # the tables in place, so trying again converges.
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _make_engine(url: str) -> Engine:
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise LedgerError(f"ledger URL {url!r} is not a SQLAlchemy URL") from exc
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets `cutover approve` and `cutover status` read while a run writes.
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return engine
