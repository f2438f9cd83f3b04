"""The ledger on every database it is meant for: SQLite by default, any SQLAlchemy URL."""

from __future__ import annotations

import multiprocessing

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from cutover.ledger import Ledger


def test_ledger_records_chains_and_detects_tampering(scratch_database, kind):
    url = scratch_database(kind, sa.MetaData())
    ledger = Ledger(url)
    try:
        ledger.create_execution(
            execution_id="shanxi-rehearse-1",
            runbook="shanxi",
            runbook_path="r.yaml",
            profile="sandbox",
            profile_path="p.yaml",
            mode="rehearse",
            options={"auto_approve": True},
            workdir="/tmp/w",
        )
        for kind_ in ("step-started", "action-done", "gate-passed", "step-completed"):
            ledger.record(
                "shanxi-rehearse-1",
                kind_,
                runbook="shanxi",
                step_id="freeze-data",
                clock_at="2023-11-25T00:00:00+08:00",
                data={"rows": 4000, "名": "太原"},
            )
        ledger.facts("shanxi-rehearse-1").put("baseline", {"persons": {"rows": 4000}})

        again = Ledger(url)  # another process opening the same ledger
        assert again.step_kinds("shanxi-rehearse-1", "shanxi") == {
            "freeze-data": {"step-started", "action-done", "gate-passed", "step-completed"}
        }
        assert again.facts("shanxi-rehearse-1").get("baseline") == {"persons": {"rows": 4000}}
        assert again.find_unfinished("shanxi", "sandbox", "rehearse").id == "shanxi-rehearse-1"
        intact, head = again.verify_chain("shanxi-rehearse-1")
        assert intact and len(head) == 64
        again.close()

        # Someone edits a recorded event behind the ledger's back: the chain says so.
        engine = sa.create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(
                sa.text("update events set data = :d where kind = 'gate-passed'"),
                {"d": '{"rows": 3999}'},
            )
        engine.dispose()
        intact, where = ledger.verify_chain("shanxi-rehearse-1")
        assert not intact and "does not match" in where
    finally:
        ledger.close()


def _open_and_close(url: str, results: multiprocessing.Queue[str]) -> None:
    try:
        Ledger(url).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_fresh_ledger_at_once_all_succeed(tmp_path):
    # `cutover rehearse` and `cutover status` may open a new SQLite ledger at the same
    # moment; before the retry loop, 9 rounds in 15 of this test failed on "already exists".
    context = multiprocessing.get_context("fork")
    for round_ in range(5):
        url = f"sqlite:///{tmp_path / f'ledger-{round_}.db'}"
        results = context.Queue()
        processes = [context.Process(target=_open_and_close, args=(url, results)) for _ in range(6)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        assert [results.get(timeout=5) for _ in processes] == ["ok"] * 6
