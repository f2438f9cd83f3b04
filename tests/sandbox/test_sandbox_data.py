"""Synthetic data: deterministic, invented, and every precondition holds by default."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx

from sandbox.data import CITIES, INSURANCE_TYPES, generate
from sandbox.runtime import Sandbox
from sandbox.testing import running_sandbox

# The Shanxi notice's preconditions, as the runbook's SQL gates ask them.
PRECONDITIONS = {
    "unpaid": "SELECT count(*) FROM benefit_payments WHERE status != 'paid'",
    "open_reviews": "SELECT count(*) FROM pending_reviews WHERE status = 'open'",
    "missing_plans": "SELECT (SELECT count(*) FROM offices) * 5 - count(DISTINCT office_id || "
    "insurance_type) FROM collection_plans WHERE period = '2023-11'",
    "in_flight": "SELECT count(*) FROM transactions WHERE status IN "
    "('in_flight', 'pending_approval')",
}


def _preconditions(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {name: conn.execute(sql).fetchone()[0] for name, sql in PRECONDITIONS.items()}
    finally:
        conn.close()


def test_generation_is_deterministic_and_scales() -> None:
    assert generate(0.1).rows == generate(0.1).rows
    small, full = generate(0.25), generate()
    assert full.count("offices") == small.count("offices") == 110
    assert full.count("persons") == 4000 and small.count("persons") == 1000
    assert full.count("contributions") == 24000
    assert 5000 < full.count("benefit_payments") < 7000
    assert full.count("collection_plans") >= 110 * len(INSURANCE_TYPES)


def test_identities_are_synthetic() -> None:
    persons = generate(0.1).rows["persons"]
    assert len({p[1] for p in persons}) == len(persons)
    for _, national_id, name, city, *_ in persons:
        # Shanxi prefix 14, then the unassigned district 99: never a real resident's id.
        assert re.fullmatch(r"14(0[1-9]|1[01])99\d{11}[\dX]", national_id)
        assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", name)
        assert city in CITIES


def test_preconditions_hold_by_default(sandbox: Sandbox) -> None:
    assert _preconditions(sandbox.dir / "old.db") == dict.fromkeys(PRECONDITIONS, 0)
    conn = sqlite3.connect(sandbox.dir / "new.db")
    try:
        assert conn.execute("SELECT count(*) FROM offices").fetchone()[0] == 110
        assert conn.execute("SELECT count(*) FROM persons").fetchone()[0] == 0
    finally:
        conn.close()


def test_data_faults_at_start_and_at_run_time(tmp_path: Path) -> None:
    faults = ["data:unpaid-benefits", "data:open-reviews", "data:missing-collection-plan"]
    with running_sandbox(tmp_path / "sb", faults=faults, scale=0.25) as sb:
        bent = _preconditions(sb.dir / "old.db")
        assert bent["unpaid"] > 0 and bent["open_reviews"] > 0
        assert bent["missing_plans"] == 1 and bent["in_flight"] == 0
        added = httpx.post(f"{sb.old_url}/_faults", json={"name": "data:in-flight"})
        assert "data:in-flight" in added.json()["faults"]
        assert _preconditions(sb.dir / "old.db")["in_flight"] == 3
        for spec in [*faults, "data:in-flight"]:
            sb.clear_fault(spec)
        assert _preconditions(sb.dir / "old.db") == dict.fromkeys(PRECONDITIONS, 0)
