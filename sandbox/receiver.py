"""The receiving agent: the tax bureau's side of the handoff.

It watches `drop/inbox/<batch>/manifest.json` (a poll every 0.1 s, woken early
by the SFTP/FTP servers when a file lands), checks every file's SHA-256 and row
count against the manifest, loads the tables into its own SQLite, checks
quality (no empty national_id, no negative amounts) and answers in
`drop/outbox/<batch>/`: `backup.tar.gz` and its `.sha256` first, `ack.json`
last, each written under a temporary name and renamed, so whoever sees the ack
also sees a complete backup. A batch is handled once per manifest content.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sqlite3
import tarfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from sandbox.faults import FaultSet

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INTEGER = re.compile(r"^-?(0|[1-9]\d{0,14})$")  # national ids (18 digits) stay text


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parse_csv(data: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    return (rows[0], rows[1:]) if rows else ([], [])


def _quality(table: str, header: list[str], records: list[list[str]]) -> list[str]:
    """The bureau's own checks: identity present, amounts not negative."""
    problems = []
    for index, column in enumerate(header):
        values = [r[index] if index < len(r) else "" for r in records]
        if column == "national_id":
            empty = sum(1 for v in values if not v.strip())
            if empty:
                problems.append(f"{table}: {empty} row(s) with an empty national_id")
        if "amount" in column:
            negative = sum(1 for v in values if v.strip().startswith("-"))
            if negative:
                problems.append(f"{table}: {negative} row(s) with a negative {column}")
    return problems


def _load(conn: sqlite3.Connection, table: str, header: list[str], records: list[list[str]]):
    """Replace one table; columns whose values are all integers are stored as integers."""
    integer = [all(not r[i] or _INTEGER.match(r[i]) for r in records) for i in range(len(header))]
    conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    columns = ", ".join(
        f'"{c}" {"INTEGER" if i else "TEXT"}' for c, i in zip(header, integer, strict=True)
    )
    conn.execute(f'CREATE TABLE "{table}" ({columns})')
    converted = [
        tuple((int(v) if v else None) if integer[i] else v for i, v in enumerate(r))
        for r in records
    ]
    marks = ",".join("?" * len(header))
    conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', converted)


class Receiver:
    """Processes each uploaded batch once; runs in its own thread until `stop()`."""

    def __init__(self, drop: Path, db_path: Path, faults: FaultSet, poll: float = 0.1) -> None:
        self.drop, self.db_path, self.faults, self.poll = drop, db_path, faults, poll
        self._done: dict[str, str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-receiver", daemon=True)

    def kick(self, _path: str = "") -> None:
        """Called by the drop servers when a file lands: look now, not at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._wake.wait(self.poll)
            self._wake.clear()

    def scan(self) -> list[str]:
        """Handle every batch whose manifest is new; returns the batches handled."""
        inbox = self.drop / "inbox"
        handled: list[str] = []
        if not inbox.is_dir():
            return handled
        for batch_dir in sorted(p for p in inbox.iterdir() if p.is_dir()):
            manifest_path = batch_dir / "manifest.json"
            try:
                raw = manifest_path.read_bytes()
                manifest = json.loads(raw)
            except (OSError, ValueError):
                continue  # absent, or still being written: look again next time
            digest = hashlib.sha256(raw).hexdigest()
            if self._done.get(batch_dir.name) == digest or self._acked(batch_dir.name, digest):
                self._done[batch_dir.name] = digest
                continue
            self.process(batch_dir.name, manifest, digest)
            self._done[batch_dir.name] = digest
            handled.append(batch_dir.name)
        return handled

    def _acked(self, batch: str, digest: str) -> bool:
        """An ack from an earlier run of the sandbox for the same manifest counts."""
        try:
            ack = json.loads((self.drop / "outbox" / batch / "ack.json").read_bytes())
        except (OSError, ValueError):
            return False
        return ack.get("manifest_sha256") == digest

    def _check_table(self, batch_dir: Path, entry: dict) -> tuple[dict, list[str], tuple | None]:
        name, file = str(entry.get("name", "")), str(entry.get("file", ""))
        report = {
            "name": name,
            "rows_expected": entry.get("rows"),
            "rows_received": 0,
            "sha256_ok": False,
        }
        path = batch_dir / file
        if not _NAME.match(name) or "/" in file or file.startswith(".") or not path.is_file():
            return report, [f"{name or '?'}: file {file!r} is missing or not allowed"], None
        data = path.read_bytes()
        report["sha256_ok"] = hashlib.sha256(data).hexdigest() == entry.get("sha256")
        try:
            header, records = _parse_csv(data)
        except (UnicodeDecodeError, csv.Error) as exc:
            return report, [f"{name}: {file} is not UTF-8 CSV ({exc})"], None
        report["rows_received"] = len(records)
        return report, _quality(name, header, records), (name, header, records)

    def process(self, batch: str, manifest: dict, digest: str = "") -> dict:
        """Check, load and acknowledge one batch; returns the ack written."""
        batch_dir = self.drop / "inbox" / batch
        tables, problems, loads = [], [], []
        for entry in manifest.get("tables", []):
            report, found, load = self._check_table(batch_dir, entry)
            tables.append(report)
            problems += found
            if load:
                loads.append(load)
        if tables and self.faults.active("receiver:count-mismatch"):
            tables[0]["rows_received"] += 1  # the fault: one table reported off by one
        for report in tables:
            if report["rows_expected"] != report["rows_received"]:
                problems.append(
                    f"{report['name']}: {report['rows_received']} rows received, "
                    f"manifest says {report['rows_expected']}"
                )
            if not report["sha256_ok"]:
                problems.append(f"{report['name']}: SHA-256 does not match the manifest")
        if self.faults.active("receiver:reject"):
            problems.append("rejected by the receiving agent (fault receiver:reject)")
        if not tables:
            problems.append("manifest lists no tables")
        status = "rejected" if problems else "accepted"
        outbox = self.drop / "outbox" / batch
        outbox.mkdir(parents=True, exist_ok=True)
        if status == "accepted":
            self._store(batch, loads)
            self._backup(batch_dir, outbox)
        ack = {
            "batch": batch,
            "status": status,
            "tables": tables,
            "problems": problems,
            "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "manifest_sha256": digest,
        }
        _atomic_write(outbox / "ack.json", json.dumps(ack, indent=2).encode())
        return ack

    def _store(self, batch: str, loads: list[tuple]) -> None:
        """Load every table of the batch in one transaction, with a receipt per table."""
        conn = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS receipts (id INTEGER PRIMARY KEY, "
                "batch TEXT, table_name TEXT, rows INTEGER, received_at TEXT)"
            )
            now = datetime.now(UTC).isoformat(timespec="seconds")
            for name, header, records in loads:
                _load(conn, name, header, records)
                conn.execute(
                    "INSERT INTO receipts (batch, table_name, rows, received_at) "
                    "VALUES (?, ?, ?, ?)",
                    (batch, name, len(records), now),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @staticmethod
    def _backup(batch_dir: Path, outbox: Path) -> None:
        """The backup copy the bureau returns: the batch as received, with its digest."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(batch_dir.iterdir()):
                if path.is_file() and not path.name.endswith(".part"):
                    tar.add(path, arcname=f"{batch_dir.name}/{path.name}")
        data = buffer.getvalue()
        _atomic_write(outbox / "backup.tar.gz", data)
        digest = hashlib.sha256(data).hexdigest()
        _atomic_write(outbox / "backup.tar.gz.sha256", f"{digest}  backup.tar.gz\n".encode())
