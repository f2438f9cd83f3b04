"""Deterministic synthetic data for the sandbox's old and new systems.

The rows are invented: pinyin-like names from a fixed syllable list and
national ids with an unassigned district code (`99`), so nothing resembles a
real person. A seeded `random.Random` makes every build identical for a given
scale, which lets checksums taken in one test be compared in another.

`data:` faults bend the built data so that a cutover precondition fails; each
bend can be applied and cleared on a live database (see `apply_data_fault`).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

CITIES: tuple[str, ...] = tuple(
    "Taiyuan Datong Yangquan Changzhi Jincheng Shuozhou Jinzhong Yuncheng Xinzhou "
    "Linfen Lvliang".split()
)
INSURANCE_TYPES: tuple[str, ...] = (
    "enterprise_pension",
    "public_pension",
    "urban_rural_resident",
    "unemployment",
    "work_injury",
)
DATA_FAULTS: tuple[str, ...] = (
    "unpaid-benefits",
    "open-reviews",
    "missing-collection-plan",
    "in-flight",
)
PLAN_PERIOD = "2023-11"
CONTRIBUTION_PERIODS = ("2023-05", "2023-06", "2023-07", "2023-08", "2023-09", "2023-10")

SCHEMA = """
CREATE TABLE offices (id INTEGER PRIMARY KEY, city TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE persons (id INTEGER PRIMARY KEY, national_id TEXT NOT NULL, name TEXT NOT NULL,
    city TEXT NOT NULL, insurance_type TEXT NOT NULL, status TEXT NOT NULL,
    enrolled_on TEXT NOT NULL);
CREATE TABLE contributions (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL,
    insurance_type TEXT NOT NULL, period TEXT NOT NULL, amount_cents INTEGER NOT NULL,
    paid_on TEXT NOT NULL, city TEXT NOT NULL);
CREATE TABLE benefit_payments (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL,
    insurance_type TEXT NOT NULL, period TEXT NOT NULL, amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL, office_id INTEGER NOT NULL, city TEXT NOT NULL);
CREATE TABLE pending_reviews (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL,
    kind TEXT NOT NULL, status TEXT NOT NULL, office_id INTEGER NOT NULL, city TEXT NOT NULL);
CREATE TABLE collection_plans (id INTEGER PRIMARY KEY, office_id INTEGER NOT NULL,
    city TEXT NOT NULL, insurance_type TEXT NOT NULL, period TEXT NOT NULL,
    generated_at TEXT NOT NULL);
CREATE TABLE transactions (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, kind TEXT NOT NULL,
    person_id INTEGER NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE job_output (id INTEGER PRIMARY KEY, job TEXT NOT NULL, run_at TEXT NOT NULL,
    rows INTEGER NOT NULL);
"""
TABLES: tuple[str, ...] = (
    "offices",
    "persons",
    "contributions",
    "benefit_payments",
    "pending_reviews",
    "collection_plans",
    "transactions",
    "job_output",
)

_SURNAMES = tuple(
    "Wang Li Zhang Liu Chen Yang Zhao Huang Zhou Wu Xu Sun Hu Zhu Gao Lin He Guo Ma "
    "Luo Han Qiao Dong Xue".split()
)
_SYLLABLES = tuple(
    "an bo chen dai fang gui hao jia kun lan min nuo pei qin rui shu tao wen xiu yao "
    "zhen ying lei ning quan".split()
)
_REVIEW_KINDS = ("qualification", "benefit_change", "transfer", "survivor_claim")


@dataclass(frozen=True)
class Dataset:
    """All rows of the business tables, as tuples in column order."""

    rows: dict[str, list[tuple]] = field(default_factory=dict)

    def count(self, table: str) -> int:
        return len(self.rows.get(table, []))


def _name(rng: random.Random) -> str:
    given = rng.choice(_SYLLABLES) + (rng.choice(_SYLLABLES) if rng.random() < 0.7 else "")
    return f"{rng.choice(_SURNAMES)} {given.capitalize()}"


def _national_id(rng: random.Random, city_index: int, seq: int) -> str:
    """18 characters shaped like a resident id, with the unassigned district 99."""
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 50))
    body = f"14{city_index + 1:02d}99{born:%Y%m%d}{seq % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return body + check


def generate(scale: float = 1.0, seed: int = 20231118) -> Dataset:
    """Build every row in memory; ~35,000 rows at scale 1 (ten offices per city)."""
    rng = random.Random(seed)
    rows: dict[str, list[tuple]] = {t: [] for t in TABLES}
    offices_by_city: dict[str, list[int]] = {}
    for ci, city in enumerate(CITIES):
        for n in range(10):
            office_id = ci * 10 + n + 1
            rows["offices"].append((office_id, city, f"{city} Social Insurance Office {n + 1}"))
            offices_by_city.setdefault(city, []).append(office_id)
    persons = max(50, int(4000 * scale))
    beneficiaries: list[tuple[int, str, str]] = []
    for pid in range(1, persons + 1):
        ci = rng.randrange(len(CITIES))
        city, kind = CITIES[ci], rng.choice(INSURANCE_TYPES)
        status = rng.choices(("active", "retired", "suspended"), (70, 25, 5))[0]
        enrolled = date(1995, 1, 1) + timedelta(days=rng.randrange(0, 365 * 28))
        rows["persons"].append(
            (pid, _national_id(rng, ci, pid), _name(rng), city, kind, status, enrolled.isoformat())
        )
        for period in CONTRIBUTION_PERIODS:
            paid_on = f"{period}-{rng.randrange(1, 28):02d}"
            amount = rng.randrange(20_000, 250_000)
            rows["contributions"].append(
                (len(rows["contributions"]) + 1, pid, kind, period, amount, paid_on, city)
            )
        if status == "retired":
            beneficiaries.append((pid, kind, city))
    for pid, kind, city in beneficiaries:
        office = rng.choice(offices_by_city[city])
        for period in CONTRIBUTION_PERIODS:
            amount = rng.randrange(150_000, 600_000)
            rows["benefit_payments"].append(
                (len(rows["benefit_payments"]) + 1, pid, kind, period, amount, "paid", office, city)
            )
    for rid in range(1, max(10, int(500 * scale)) + 1):
        pid = rng.randrange(1, persons + 1)
        city = rows["persons"][pid - 1][3]
        office = rng.choice(offices_by_city[city])
        rows["pending_reviews"].append((rid, pid, rng.choice(_REVIEW_KINDS), "done", office, city))
    for office_id, city, _ in rows["offices"]:
        for period in ("2023-10", PLAN_PERIOD):
            for kind in INSURANCE_TYPES:
                day = "2023-10-05" if period == "2023-10" else f"2023-11-{rng.randrange(1, 17):02d}"
                rows["collection_plans"].append(
                    (
                        len(rows["collection_plans"]) + 1,
                        office_id,
                        city,
                        kind,
                        period,
                        f"{day}T09:{rng.randrange(60):02d}:00+08:00",
                    )
                )
    for tid in range(1, max(10, int(200 * scale)) + 1):
        channel = rng.choice(("counter-pension", "online-hall", "app-citizen", "nearby-service"))
        rows["transactions"].append(
            (
                tid,
                channel,
                rng.choice(("collection", "account", "benefit", "query")),
                rng.randrange(1, persons + 1),
                "done",
                f"2023-11-{rng.randrange(1, 18):02d}T{rng.randrange(8, 18):02d}:00:00+08:00",
            )
        )
    for job_id, job in enumerate(("job-statistics", "job-qualification", "job-card-extraction")):
        rows["job_output"].append((job_id + 1, job, "2023-11-17T02:00:00+08:00", persons))
    return Dataset(rows)


def _insert(conn: sqlite3.Connection, table: str, rows: list[tuple]) -> None:
    if rows:
        marks = ",".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def write_database(path: Path, dataset: Dataset, tables: tuple[str, ...] = TABLES) -> None:
    """Write the schema and the given tables' rows; temp file then rename, so a
    crash never leaves a half-built database where the services look for one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        for table in tables:
            _insert(conn, table, dataset.rows.get(table, []))
        conn.commit()
        # WAL lets the services write while a step reads (checksums, exports).
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)


def build_databases(
    directory: Path, scale: float = 1.0, data_faults: tuple[str, ...] = ()
) -> dict[str, float | int]:
    """Create old.db (full data) and new.db (offices only); returns timings and counts."""
    started = time.perf_counter()
    dataset = generate(scale)
    generated = time.perf_counter()
    write_database(directory / "old.db", dataset)
    write_database(directory / "new.db", dataset, tables=("offices",))
    for name in data_faults:
        apply_data_fault(directory / "old.db", name)
    done = time.perf_counter()
    return {
        "generate_s": round(generated - started, 3),
        "write_s": round(done - generated, 3),
        "rows": sum(len(r) for r in dataset.rows.values()),
    }


def connect(path: Path) -> sqlite3.Connection:
    """A connection that waits for locks held by steps instead of failing at once."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


# Each data fault bends a fixed, deterministic slice of rows, so clearing restores it.
_BENDS: dict[str, tuple[str, str]] = {
    "unpaid-benefits": (
        "UPDATE benefit_payments SET status='pending' WHERE period='2023-10' AND id % 37 = 0",
        "UPDATE benefit_payments SET status='paid' WHERE period='2023-10' AND id % 37 = 0",
    ),
    "open-reviews": (
        "UPDATE pending_reviews SET status='open' WHERE id % 41 = 0",
        "UPDATE pending_reviews SET status='done' WHERE id % 41 = 0",
    ),
    "missing-collection-plan": (
        "DELETE FROM collection_plans WHERE office_id = 57 AND period='2023-11'"
        " AND insurance_type='unemployment'",
        "INSERT INTO collection_plans (office_id, city, insurance_type, period, generated_at)"
        " SELECT id, city, 'unemployment', '2023-11', '2023-11-10T09:00:00+08:00' FROM offices"
        " WHERE id = 57 AND NOT EXISTS (SELECT 1 FROM collection_plans WHERE office_id = 57"
        " AND period='2023-11' AND insurance_type='unemployment')",
    ),
    "in-flight": (
        "UPDATE transactions SET status = CASE WHEN id % 2 = 0 THEN 'in_flight'"
        " ELSE 'pending_approval' END WHERE id IN (3, 4, 7)",
        "UPDATE transactions SET status='done' WHERE id IN (3, 4, 7)",
    ),
}


def apply_data_fault(path: Path, name: str, clear: bool = False) -> None:
    """Bend (or restore) the rows a `data:<name>` fault is about; idempotent."""
    if name not in _BENDS:
        raise ValueError(f"unknown data fault {name!r}; known: {', '.join(DATA_FAULTS)}")
    conn = connect(path)
    try:
        conn.execute(_BENDS[name][1 if clear else 0])
    finally:
        conn.close()
