"""The tax bureau's receiving agent, fed through the real SFTP and FTP servers."""

from __future__ import annotations

import csv
import ftplib
import hashlib
import io
import json
import sqlite3
import tarfile
import time
from pathlib import Path

import paramiko

from sandbox.faults import FaultSet
from sandbox.receiver import Receiver
from sandbox.runtime import Sandbox

EXPORT = (
    ("persons", "insurance_type != 'urban_rural_resident'"),
    ("contributions", "insurance_type != 'urban_rural_resident'"),
)


def make_batch(db: Path, out: Path, batch: str, tables=EXPORT) -> dict:
    """An export batch shaped like `database.export` makes one (CSV + manifest)."""
    out.mkdir(parents=True)
    conn = sqlite3.connect(db)
    entries = []
    for name, where in tables:
        cursor = conn.execute(f"SELECT * FROM {name} WHERE {where} ORDER BY id")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([c[0] for c in cursor.description])
        rows = cursor.fetchall()
        writer.writerows(rows)
        data = buffer.getvalue().encode()
        (out / f"{name}.csv").write_bytes(data)
        entries.append(
            {
                "name": name,
                "file": f"{name}.csv",
                "rows": len(rows),
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "where": where,
            }
        )
    conn.close()
    manifest = {
        "batch": batch,
        "source": "old-system",
        "created_at": "2023-11-25T00:00:00+08:00",
        "tables": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def sftp_session(sb: Sandbox) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    client = paramiko.SSHClient()
    client.load_host_keys(str(sb.dir / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        port=sb.sftp_port,
        username="cutover",
        key_filename=str(sb.dir / "client_key"),
        look_for_keys=False,
        allow_agent=False,
    )
    return client, client.open_sftp()


def upload_sftp(sftp: paramiko.SFTPClient, local: Path, batch: str) -> None:
    """Data files first, each as .part then renamed; the manifest last."""
    sftp.mkdir(f"/inbox/{batch}")
    names = sorted(p.name for p in local.iterdir() if p.name != "manifest.json")
    for name in [*names, "manifest.json"]:
        sftp.put(str(local / name), f"/inbox/{batch}/{name}.part")
        sftp.rename(f"/inbox/{batch}/{name}.part", f"/inbox/{batch}/{name}")


def wait_for_ack(sftp: paramiko.SFTPClient, batch: str, limit: float = 15.0) -> dict:
    """Poll the outbox as the `sftp.ack` check does; the limit only bounds a broken run."""
    deadline = time.monotonic() + limit
    while True:
        try:
            with sftp.open(f"/outbox/{batch}/ack.json") as handle:
                return json.loads(handle.read())
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise AssertionError(f"no ack for {batch}") from None
            time.sleep(0.05)


def test_accepted_batch_is_loaded_and_backed_up(sandbox: Sandbox, tmp_path: Path) -> None:
    manifest = make_batch(sandbox.dir / "old.db", tmp_path / "b1", "t-accept")
    client, sftp = sftp_session(sandbox)
    try:
        upload_sftp(sftp, tmp_path / "b1", "t-accept")
        ack = wait_for_ack(sftp, "t-accept")
        backup = io.BytesIO()
        sftp.getfo("/outbox/t-accept/backup.tar.gz", backup)
        with sftp.open("/outbox/t-accept/backup.tar.gz.sha256") as handle:
            digest_line = handle.read().decode()
    finally:
        client.close()
    assert ack["status"] == "accepted", ack["problems"]
    assert ack["problems"] == []
    assert [
        (t["name"], t["rows_expected"], t["rows_received"], t["sha256_ok"]) for t in ack["tables"]
    ] == [(t["name"], t["rows"], t["rows"], True) for t in manifest["tables"]]
    assert digest_line.split() == [hashlib.sha256(backup.getvalue()).hexdigest(), "backup.tar.gz"]
    with tarfile.open(fileobj=io.BytesIO(backup.getvalue())) as tar:
        assert sorted(tar.getnames()) == [
            "t-accept/contributions.csv",
            "t-accept/manifest.json",
            "t-accept/persons.csv",
        ]
    conn = sqlite3.connect(sandbox.dir / "receiver.db")
    try:
        for table in manifest["tables"]:
            loaded = conn.execute(f"SELECT count(*) FROM {table['name']}").fetchone()[0]
            assert loaded == table["rows"] > 0
        # Ids stay text: 18-digit national ids are not squeezed into integers.
        assert conn.execute(
            "SELECT typeof(national_id), typeof(id) FROM persons LIMIT 1"
        ).fetchone() == ("text", "integer")
    finally:
        conn.close()


def test_ftp_upload_is_acknowledged(sandbox: Sandbox, tmp_path: Path) -> None:
    make_batch(sandbox.dir / "old.db", tmp_path / "b2", "t-ftp-batch", tables=(("offices", "1=1"),))
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", sandbox.ftp_port, timeout=10)
    ftp.login("cutover", (sandbox.dir / "ftp_password").read_text().strip())
    try:
        ftp.mkd("/inbox/t-ftp-batch")
        for name in ("offices.csv", "manifest.json"):
            with open(tmp_path / "b2" / name, "rb") as handle:
                ftp.storbinary(f"STOR /inbox/t-ftp-batch/{name}", handle)
    finally:
        ftp.quit()
    client, sftp = sftp_session(sandbox)
    try:
        ack = wait_for_ack(sftp, "t-ftp-batch")
    finally:
        client.close()
    assert ack["status"] == "accepted"
    assert ack["tables"] == [
        {"name": "offices", "rows_expected": 110, "rows_received": 110, "sha256_ok": True}
    ]


def test_count_mismatch_and_reject_faults(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    sb = fresh_sandbox
    make_batch(sb.dir / "old.db", tmp_path / "m", "t-mismatch")
    make_batch(sb.dir / "old.db", tmp_path / "r", "t-reject", tables=(("offices", "1=1"),))
    client, sftp = sftp_session(sb)
    try:
        sb.fault("receiver:count-mismatch")
        upload_sftp(sftp, tmp_path / "m", "t-mismatch")
        mismatch = wait_for_ack(sftp, "t-mismatch")
        sb.clear_fault("receiver:count-mismatch")
        sb.fault("receiver:reject")
        upload_sftp(sftp, tmp_path / "r", "t-reject")
        rejected = wait_for_ack(sftp, "t-reject")
        outbox = sorted(sftp.listdir("/outbox/t-mismatch"))
    finally:
        client.close()
    assert mismatch["status"] == "rejected"
    off = [t for t in mismatch["tables"] if t["rows_received"] != t["rows_expected"]]
    assert len(off) == 1 and off[0]["rows_received"] == off[0]["rows_expected"] + 1
    assert any("rows received" in p for p in mismatch["problems"])
    assert outbox == ["ack.json"]  # no backup copy for a rejected batch
    assert rejected["status"] == "rejected"
    assert rejected["tables"][0]["rows_received"] == rejected["tables"][0]["rows_expected"]
    assert any("receiver:reject" in p for p in rejected["problems"])
    assert not (sb.dir / "receiver.db").exists()  # nothing was loaded


def _drop_batch(drop: Path, batch: str, csv_text: str, rows: int) -> None:
    folder = drop / "inbox" / batch
    folder.mkdir(parents=True)
    data = csv_text.encode()
    (folder / "persons.csv").write_bytes(data)
    table = {
        "name": "persons",
        "file": "persons.csv",
        "rows": rows,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "where": None,
    }
    (folder / "manifest.json").write_text(json.dumps({"batch": batch, "tables": [table]}))


def test_quality_checks_and_each_batch_once(tmp_path: Path) -> None:
    """The agent without its thread: `scan()` is what the poll loop calls."""
    receiver = Receiver(tmp_path, tmp_path / "receiver.db", FaultSet())
    _drop_batch(tmp_path, "good", "id,national_id,amount_cents\n1,140199198001010011,5\n", 1)
    _drop_batch(tmp_path, "bad", "id,national_id,amount_cents\n1,,5\n2,140199198001010011,-3\n", 2)
    assert receiver.scan() == ["bad", "good"]
    assert receiver.scan() == []  # each batch once
    bad = json.loads((tmp_path / "outbox" / "bad" / "ack.json").read_text())
    assert bad["status"] == "rejected"
    assert bad["problems"] == [
        "persons: 1 row(s) with an empty national_id",
        "persons: 1 row(s) with a negative amount_cents",
    ]
    good = json.loads((tmp_path / "outbox" / "good" / "ack.json").read_text())
    assert good["status"] == "accepted"
    # A restarted agent recognises its own ack and does not handle the batch again.
    again = Receiver(tmp_path, tmp_path / "receiver.db", FaultSet())
    assert again.scan() == []
