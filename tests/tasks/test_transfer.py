"""Uploads, downloads and the receiver's ack over the sandbox's real SFTP and FTP drop."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tasks.transfer
from cutover.errors import ConnectError, StepError
from cutover.steps import StepContext
from sandbox.runtime import Sandbox
from tasks.transfer import (
    AckCheck,
    GetFile,
    PutBatch,
    ftp_ack,
    ftp_get,
    ftp_put,
    sftp_ack,
    sftp_get,
    sftp_put,
)

MakeContext = Callable[..., StepContext]

TABLES = {
    "persons": "id,national_id,name,city\n"
    + "".join(f"{i},14010019800101{i:04d},Person {i},Taiyuan\n" for i in range(1, 4)),
    "contributions": "id,person_id,period,amount_cents\n"
    + "".join(f"{i},{i % 3 + 1},2023-11,{1000 * i}\n" for i in range(1, 5)),
    "offices": "id,city,name\n1,Taiyuan,Taiyuan office\n2,Datong,Datong office\n",
}


def write_batch(workdir: Path, batch: str) -> dict[str, Any]:
    """An export batch as database.export writes it: CSV files and manifest.json."""
    folder = workdir / "exports" / batch
    folder.mkdir(parents=True)
    tables = []
    for name, text in TABLES.items():
        data = text.encode()
        (folder / f"{name}.csv").write_bytes(data)
        tables.append({"name": name, "file": f"{name}.csv", "rows": text.count("\n") - 1,
                       "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                       "where": None})  # fmt: skip
    manifest = {"batch": batch, "source": "old-system", "created_at": "2023-11-30T18:00:00+08:00",
                "tables": tables}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


@pytest.fixture
def ctx(fresh_sandbox: Sandbox, make_context: MakeContext) -> StepContext:
    return make_context(fresh_sandbox.profile()["targets"])


def ack(target: str, batch: str, **extra: Any) -> AckCheck:
    return AckCheck.model_validate({"target": target, "batch": batch, "timeout": "30s", **extra})


def sftp_send(ctx: StepContext, batch: str) -> dict[str, Any]:
    """`transfer.sftp_put` of `batch` to the sandbox's SFTP drop."""
    return sftp_put(PutBatch(target="tax-drop", batch=batch), ctx)


def left_in_inbox(sandbox: Sandbox, batch: str, name: str, text: str) -> Path:
    """A file on the drop, in `inbox/<batch>/`, as if an earlier upload had left it."""
    inbox = sandbox.drop / "inbox" / batch
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / name).write_text(text)
    return inbox / name


def test_sftp_put_is_acked_and_not_sent_twice(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    write_batch(ctx.workdir, "tax-2023-11")
    params = PutBatch(target="tax-drop", batch="tax-2023-11")

    sent = sftp_put(params, ctx)

    assert sent["uploaded"] == ["persons.csv", "contributions.csv", "offices.csv", "manifest.json"]
    assert sent["skipped"] == {} and sent["remote_dir"] == "/inbox/tax-2023-11"
    inbox = fresh_sandbox.drop / "inbox" / "tax-2023-11"
    assert sorted(p.name for p in inbox.iterdir()) == [
        "contributions.csv",
        "manifest.json",
        "offices.csv",
        "persons.csv",
    ]  # fmt: skip  (no .part left behind)
    verdict = sftp_ack(ack("tax-drop", "tax-2023-11"), ctx)
    assert verdict.passed, verdict.summary
    assert verdict.observed["tables"]["persons"]["rows_received"] == 3

    again = sftp_put(params, ctx)
    assert again["delivered_before"] is True and again["uploaded"] == []


def test_resumed_upload_skips_files_already_there(
    fresh_sandbox: Sandbox, ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_batch(ctx.workdir, "resume")
    real_upload = tasks.transfer._upload
    calls: list[str] = []

    def upload_then_crash(drop: Any, local: Path, remote: str, size: int) -> Any:
        calls.append(remote)
        if len(calls) == 2:
            raise ConnectError("link dropped (simulated)")
        return real_upload(drop, local, remote, size)

    monkeypatch.setattr(tasks.transfer, "_upload", upload_then_crash)
    with pytest.raises(ConnectError):
        sftp_send(ctx, "resume")
    monkeypatch.undo()
    inbox = fresh_sandbox.drop / "inbox" / "resume"
    assert sorted(p.name for p in inbox.iterdir()) == ["persons.csv"]  # no manifest: not acted on
    # offices.csv arrived too, but the crash came before our receipt: it is read back.
    (inbox / "offices.csv").write_text(TABLES["offices"])

    resumed = sftp_send(ctx, "resume")

    assert resumed["skipped"] == {"persons.csv": "receipt", "offices.csv": "read back"}
    assert resumed["uploaded"] == ["contributions.csv", "manifest.json"]
    assert sftp_ack(ack("tax-drop", "resume"), ctx).passed


def test_damaged_remote_copy_is_sent_again(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    write_batch(ctx.workdir, "damaged")
    damaged = TABLES["offices"].replace("Datong", "Dxxong")  # same size
    remote = left_in_inbox(fresh_sandbox, "damaged", "offices.csv", damaged)

    sent = sftp_send(ctx, "damaged")

    assert "offices.csv" in sent["uploaded"] and sent["skipped"] == {}
    assert remote.read_text() == TABLES["offices"]


def test_count_mismatch_fails_the_ack(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    fresh_sandbox.fault("receiver:count-mismatch")
    write_batch(ctx.workdir, "mismatch")
    sftp_send(ctx, "mismatch")

    verdict = sftp_ack(ack("tax-drop", "mismatch"), ctx)

    assert not verdict.passed
    assert "persons: received 4 rows, we sent 3" in verdict.summary
    assert verdict.expected["tables"]["persons"] == 3
    assert verdict.observed["tables"]["persons"]["rows_received"] == 4


def test_ack_that_never_comes_times_out_on_the_clock(ctx: StepContext) -> None:
    write_batch(ctx.workdir, "never-sent")
    start = ctx.clock.now()

    verdict = sftp_ack(ack("tax-drop", "never-sent", timeout="1m", poll="5s"), ctx)

    assert not verdict.passed
    assert verdict.summary == "no ack.json at /outbox/never-sent/ack.json after 1m"
    assert ctx.clock.now() - start >= timedelta(minutes=1)


def test_local_batch_must_match_its_manifest(ctx: StepContext) -> None:
    write_batch(ctx.workdir, "bad")
    (ctx.workdir / "exports" / "bad" / "offices.csv").write_text("id\n")
    with pytest.raises(StepError, match="does not match its manifest: offices.csv"):
        sftp_send(ctx, "bad")


def test_a_different_manifest_on_the_drop_is_not_overwritten(
    fresh_sandbox: Sandbox, ctx: StepContext
) -> None:
    write_batch(ctx.workdir, "clash")
    left_in_inbox(fresh_sandbox, "clash", "manifest.json", '{"batch": "clash", "tables": []}')
    with pytest.raises(StepError, match="already exists with other content"):
        sftp_send(ctx, "clash")


def test_sftp_get_verifies_against_the_sha256_file(
    fresh_sandbox: Sandbox, ctx: StepContext
) -> None:
    write_batch(ctx.workdir, "backup")
    sftp_send(ctx, "backup")
    assert sftp_ack(ack("tax-drop", "backup"), ctx).passed
    params = GetFile(
        target="tax-drop", remote_path="outbox/backup/backup.tar.gz", local_name="tax/backup.tar.gz"
    )

    got = sftp_get(params, ctx)

    local = ctx.workdir / "tax" / "backup.tar.gz"
    assert (
        got["skipped"] is False and hashlib.sha256(local.read_bytes()).hexdigest() == got["sha256"]
    )
    assert sftp_get(params, ctx)["skipped"] is True

    outbox = fresh_sandbox.drop / "outbox" / "backup"
    (outbox / "backup.tar.gz.sha256").write_text("0" * 64 + "  backup.tar.gz\n")
    local.unlink()
    with pytest.raises(StepError, match="differs from"):
        sftp_get(params, ctx)
    assert not local.exists() and not local.with_name("backup.tar.gz.part").exists()


def test_ftp_put_ack_and_get(fresh_sandbox: Sandbox, ctx: StepContext) -> None:
    write_batch(ctx.workdir, "ftp-batch")
    params = PutBatch(target="tax-ftp", batch="ftp-batch")

    sent = ftp_put(params, ctx)

    assert sent["uploaded"][-1] == "manifest.json" and len(sent["uploaded"]) == 4
    verdict = ftp_ack(ack("tax-ftp", "ftp-batch"), ctx)
    assert verdict.passed, verdict.summary
    assert ftp_put(params, ctx)["delivered_before"] is True

    got = ftp_get(
        GetFile(
            target="tax-ftp", remote_path="outbox/ftp-batch/backup.tar.gz", local_name="b.tar.gz"
        ),
        ctx,
    )
    assert got["bytes"] == (fresh_sandbox.drop / "outbox/ftp-batch/backup.tar.gz").stat().st_size


def test_ftp_wrong_password_is_a_connect_error(
    fresh_sandbox: Sandbox, make_context: MakeContext, tmp_path: Path
) -> None:
    (tmp_path / "wrong").write_text("not-the-password\n")
    targets = fresh_sandbox.profile()["targets"]
    targets["tax-ftp"]["ftp"]["password"] = {"secret": f"file:{tmp_path / 'wrong'}"}
    ctx = make_context(targets)
    write_batch(ctx.workdir, "nope")
    with pytest.raises(ConnectError, match="cannot connect or log in"):
        ftp_put(PutBatch(target="tax-ftp", batch="nope"), ctx)


def test_ack_for_an_earlier_manifest_does_not_count(
    fresh_sandbox: Sandbox, ctx: StepContext
) -> None:
    manifest = write_batch(ctx.workdir, "redo")
    sftp_send(ctx, "redo")
    assert sftp_ack(ack("tax-drop", "redo"), ctx).passed
    # The batch is exported again (new manifest) but not yet sent: the old ack is stale.
    manifest["created_at"] = "2023-11-30T19:00:00+08:00"
    (ctx.workdir / "exports" / "redo" / "manifest.json").write_text(json.dumps(manifest))

    verdict = sftp_ack(ack("tax-drop", "redo", timeout="10s"), ctx)

    assert not verdict.passed
    assert verdict.summary.startswith("ack.json answers another manifest")
