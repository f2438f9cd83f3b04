"""File transfers to and from a drop (SFTP or FTP/FTPS), and the receiver's acknowledgement.

Uploading an export batch is safe to repeat:
- each file goes to `<name>.part` and is renamed only once its size is right, so
  a file under its final name is always complete;
- `manifest.json` goes last: the receiver acts only when it appears, so until
  then re-sending any data file is harmless;
- a remote `manifest.json` equal to ours means the batch was delivered, and
  nothing is sent again (a different one is an error: the receiver may have
  acted on it already).
A file already on the drop with the right size is skipped when its SHA-256 is
known to match: from a receipt this execution keeps in its workdir (written
after each rename, with the remote size and mtime seen then), or else by
reading it back, which is done only for files up to 16 MiB; bigger files
without a receipt are sent again. The receipt stays on our side so that the
receiver's inbox holds exactly what the interface agreement says.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field

from cutover.errors import StepError
from cutover.steps import Evidence, StepContext, Verdict, action, check
from cutover.types import Duration, Params, TargetName, format_duration
from tasks._batch import MANIFEST, SAFE_NAME, export_dir, file_sha256
from tasks._ftp import ftp_session
from tasks._ssh import sftp_session

READ_BACK_LIMIT = 16 << 20
Proto = Literal["sftp", "ftp"]
Stat = tuple[int, float | None]  # (size, mtime) of a remote file


class PutBatch(Params):
    target: TargetName = Field(description="The drop to upload to")
    batch: str = Field(pattern=SAFE_NAME, description="Export batch in workdir/exports/<batch>")
    remote_dir: str = Field(
        "inbox", description="Directory under the drop's root; files go to <remote_dir>/<batch>/"
    )


class GetFile(Params):
    target: TargetName = Field(description="The drop to download from")
    remote_path: str = Field(
        description="File under the drop's root; <remote_path>.sha256 must lie beside it"
    )
    local_name: str = Field(description="Where to put it, relative to the execution's workdir")


class AckCheck(Params):
    target: TargetName = Field(description="The drop the receiver answers on")
    batch: str = Field(pattern=SAFE_NAME, description="Export batch whose ack to wait for")
    remote_dir: str = Field("outbox", description="Directory with <batch>/ack.json")
    timeout: Duration = Field(timedelta(minutes=2), description="How long to wait for the ack")
    poll: Duration = Field(timedelta(seconds=2), description="How often to look")


class Drop(Protocol):
    """What transfers need of a drop: `tasks._ssh.SftpDrop` and `tasks._ftp.FtpDrop`."""

    def stat(self, path: str) -> Stat | None: ...
    def makedirs(self, path: str) -> None: ...
    def put(self, local: Path, remote: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def read(self, path: str, limit: int = 1 << 20) -> bytes | None: ...
    def sha256(self, path: str) -> str: ...
    def get(self, remote: str, local: Path) -> None: ...


@contextmanager
def session(ctx: StepContext, target: str, proto: Proto) -> Iterator[tuple[Drop, str]]:
    if proto == "sftp":
        with sftp_session(ctx, target) as opened:
            yield opened
    else:
        with ftp_session(ctx, target) as opened:
            yield opened


@dataclass(frozen=True)
class LocalFile:
    name: str
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class LocalBatch:
    dir: Path
    manifest: dict[str, Any]
    manifest_bytes: bytes
    files: list[LocalFile]


def read_manifest(ctx: StepContext, batch: str) -> tuple[Path, bytes, dict[str, Any]]:
    folder = export_dir(ctx, batch)
    try:
        raw = (folder / MANIFEST).read_bytes()
        manifest = json.loads(raw)
        for table in manifest["tables"]:
            missing = [k for k in ("name", "file", "rows", "sha256") if k not in table]
            if missing:
                raise KeyError(f"a table has no {', '.join(missing)}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepError(f"export batch {batch}: no usable manifest in {folder} ({exc!r})") from exc
    return folder, raw, manifest


def load_batch(ctx: StepContext, batch: str) -> LocalBatch:
    """The export batch, every file checked against its manifest before it leaves us."""
    folder, raw, manifest = read_manifest(ctx, batch)
    files, damaged = [], []
    for table in manifest["tables"]:
        name = str(table["file"])
        path = folder / name
        if "/" in name or name in ("", ".", "..", MANIFEST) or not path.is_file():
            damaged.append(f"{name}: missing")
            continue
        local = LocalFile(name, path, path.stat().st_size, file_sha256(path))
        if local.size != table.get("bytes", local.size) or local.sha256 != table["sha256"]:
            damaged.append(f"{name}: size or SHA-256 differs from the manifest")
        files.append(local)
    if damaged:
        raise StepError(
            f"export batch {batch} does not match its manifest: {'; '.join(damaged)}",
            evidence={"batch": batch, "damaged": damaged},
        )
    return LocalBatch(folder, manifest, raw, files)


class Receipt:
    """What this execution has put where: remote path -> sha256, size and mtime seen then."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    def vouches(self, remote: str, sha256: str, seen: Stat) -> bool:
        entry = self.entries.get(remote)
        return entry == {"sha256": sha256, "size": seen[0], "mtime": seen[1]}

    def record(self, remote: str, sha256: str, seen: Stat) -> None:
        self.entries[remote] = {"sha256": sha256, "size": seen[0], "mtime": seen[1]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1), "utf-8")
        tmp.replace(self.path)


def _upload(drop: Drop, local: Path, remote: str, size: int) -> Stat:
    """Send to `<remote>.part`, check its size, rename; returns the final file's stat."""
    part = remote + ".part"
    drop.put(local, part)
    seen = drop.stat(part)
    if seen is None or seen[0] != size:
        raise StepError(
            f"upload of {remote}: the drop holds {seen[0] if seen else 'no'} bytes, sent {size}"
        )
    drop.rename(part, remote)
    final = drop.stat(remote)
    if final is None:
        raise StepError(f"upload of {remote}: gone after renaming {part}")
    return final


def _skip_reason(drop: Drop, receipt: Receipt, remote: str, f: LocalFile) -> str | None:
    """Why the remote copy can be trusted, or None when the file must be sent."""
    seen = drop.stat(remote)
    if seen is None or seen[0] != f.size:
        return None
    if receipt.vouches(remote, f.sha256, seen):
        return "receipt"
    if f.size <= READ_BACK_LIMIT and drop.sha256(remote) == f.sha256:
        return "read back"
    return None


def put_batch(ctx: StepContext, params: PutBatch, proto: Proto) -> Evidence:
    batch = load_batch(ctx, params.batch)
    receipt = Receipt(ctx.workdir / "transfers" / f"{proto}-{params.target}.json")
    with session(ctx, params.target, proto) as (drop, root):
        remote_dir = posixpath.join(root, params.remote_dir, params.batch)
        remote_manifest = posixpath.join(remote_dir, MANIFEST)
        evidence: Evidence = {"batch": params.batch, "remote_dir": remote_dir}
        delivered = drop.read(remote_manifest, len(batch.manifest_bytes) + 1)
        if delivered == batch.manifest_bytes:
            names = [f.name for f in batch.files] + [MANIFEST]
            skipped = dict.fromkeys(names, "delivered before")
            return {**evidence, "uploaded": [], "skipped": skipped, "delivered_before": True}
        if delivered is not None:
            raise StepError(
                f"{remote_manifest} already exists with other content and the receiver may "
                "have acted on it; agree with the receiver before removing it, or use a new batch",
                evidence=evidence,
            )
        drop.makedirs(remote_dir)
        uploaded: list[str] = []
        skipped: dict[str, str] = {}
        sent = 0
        for f in batch.files:
            remote = posixpath.join(remote_dir, f.name)
            reason = _skip_reason(drop, receipt, remote, f)
            if reason:
                skipped[f.name] = reason
                continue
            receipt.record(remote, f.sha256, _upload(drop, f.path, remote, f.size))
            uploaded.append(f.name)
            sent += f.size
        # Last, so the receiver never sees a manifest whose files are not all in place.
        _upload(drop, batch.dir / MANIFEST, remote_manifest, len(batch.manifest_bytes))
    return {
        **evidence,
        "uploaded": [*uploaded, MANIFEST],
        "skipped": skipped,
        "bytes_sent": sent + len(batch.manifest_bytes),
        "delivered_before": False,
    }


def _workdir_path(ctx: StepContext, name: str) -> Path:
    path = (ctx.workdir / name).resolve()
    if not path.is_relative_to(ctx.workdir.resolve()):
        raise StepError(f"local_name {name!r} points outside the workdir")
    return path


def get_file(ctx: StepContext, params: GetFile, proto: Proto) -> Evidence:
    local = _workdir_path(ctx, params.local_name)
    with session(ctx, params.target, proto) as (drop, root):
        remote = posixpath.join(root, params.remote_path)
        sums = drop.read(remote + ".sha256", 4096)
        if sums is None:
            raise StepError(f"{remote}.sha256 is missing; cannot verify {remote}")
        want = (sums.decode("ascii", errors="replace").split() or [""])[0].lower()
        evidence: Evidence = {"remote": remote, "local": str(local), "sha256": want}
        if local.is_file() and file_sha256(local) == want:
            return {**evidence, "skipped": True, "bytes": local.stat().st_size}
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(local.name + ".part")
        drop.get(remote, part)
    got = file_sha256(part)
    if got != want:
        part.unlink()
        raise StepError(
            f"{remote}: downloaded SHA-256 {got[:12]}... differs from {remote}.sha256",
            evidence={**evidence, "got": got},
        )
    part.replace(local)
    return {**evidence, "skipped": False, "bytes": local.stat().st_size}


def _judge(ack: Any, manifest: dict[str, Any]) -> Verdict:
    expected = {"status": "accepted", "tables": {t["name"]: t["rows"] for t in manifest["tables"]}}
    if not isinstance(ack, dict):
        return Verdict(False, "ack.json is not an object", ack, expected)
    got = {
        t.get("name"): {k: t.get(k) for k in ("rows_expected", "rows_received", "sha256_ok")}
        for t in ack.get("tables") or []
        if isinstance(t, dict)
    }
    observed = {"status": ack.get("status"), "tables": got, "problems": ack.get("problems")}
    wrong = [f"status is {ack.get('status')}"] if ack.get("status") != "accepted" else []
    for name, rows in expected["tables"].items():
        t = got.get(name)
        if t is None:
            wrong.append(f"{name} missing from the ack")
        elif t["rows_received"] != rows or t["rows_expected"] != rows or t["sha256_ok"] is not True:
            wrong.append(f"{name}: received {t['rows_received']} rows, we sent {rows}")
    wrong += [f"{name} was not sent" for name in got if name not in expected["tables"]]
    if wrong:
        problems = "; ".join(map(str, (ack.get("problems") or [])[:3]))
        summary = "; ".join(wrong[:5]) + (f" (receiver: {problems})" if problems else "")
        return Verdict(False, summary[:500], observed, expected)
    return Verdict(True, f"accepted, {len(got)} tables with the counts we sent", observed, expected)


def wait_for_ack(ctx: StepContext, params: AckCheck, proto: Proto) -> Verdict:
    _, raw_manifest, manifest = read_manifest(ctx, params.batch)
    ours = hashlib.sha256(raw_manifest).hexdigest()
    deadline = ctx.clock.now() + params.timeout
    waiting_for = "no ack.json"
    with session(ctx, params.target, proto) as (drop, root):
        path = posixpath.join(root, params.remote_dir, params.batch, "ack.json")
        while True:
            raw = drop.read(path)
            try:
                ack = None if raw is None else json.loads(raw)
            except ValueError:  # caught mid-write; look again
                ack, waiting_for = None, "ack.json is not valid JSON"
            # An ack naming another manifest answers an earlier upload of this batch.
            if isinstance(ack, dict) and ack.get("manifest_sha256") not in (None, ours):
                ack, waiting_for = None, "ack.json answers another manifest"
            if ack is not None:
                return _judge(ack, manifest)
            if ctx.clock.now() >= deadline:
                summary = f"{waiting_for} at {path} after {format_duration(params.timeout)}"
                return Verdict(False, summary, None, {"status": "accepted"})
            ctx.clock.sleep(params.poll.total_seconds())


def _step_types(
    proto: Proto, over: str
) -> tuple[
    Callable[[PutBatch, StepContext], Evidence],
    Callable[[GetFile, StepContext], Evidence],
    Callable[[AckCheck, StepContext], Verdict],
]:
    """Register `transfer.<proto>_put`, `transfer.<proto>_get` and `<proto>.ack`.

    SFTP and FTP steps differ only in the drop they open, so one function per
    step serves both protocols; `over` names the protocol in their docs."""

    def put(params: PutBatch, ctx: StepContext) -> Evidence:
        return put_batch(ctx, params, proto)

    def get(params: GetFile, ctx: StepContext) -> Evidence:
        return get_file(ctx, params, proto)

    def ack(params: AckCheck, ctx: StepContext) -> Verdict:
        return wait_for_ack(ctx, params, proto)

    put.__doc__ = (
        f"Upload an export batch over {over}; files already there and verified are skipped."
    )
    get.__doc__ = f"Download a file over {over} and verify it against the `.sha256` file beside it."
    ack.__doc__ = (
        f"Passes when the receiver's ack.json (over {over}) says accepted with our "
        "manifest's row counts."
    )
    for fn in (put, get, ack):
        fn.__name__ = fn.__qualname__ = f"{proto}_{fn.__name__}"
    return (
        action(f"transfer.{proto}_put")(put),
        action(f"transfer.{proto}_get")(get),
        check(f"{proto}.ack")(ack),
    )


sftp_put, sftp_get, sftp_ack = _step_types("sftp", "SFTP")
ftp_put, ftp_get, ftp_ack = _step_types("ftp", "FTP/FTPS")
