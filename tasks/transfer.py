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

import ftplib
import hashlib
import json
import posixpath
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field

from cutover.errors import ConnectError, StepError
from cutover.steps import Evidence, StepContext, Verdict, action, check
from cutover.types import Duration, Params, TargetName, format_duration
from tasks._ssh import CHUNK, sftp_session

MANIFEST = "manifest.json"
READ_BACK_LIMIT = 16 << 20
Proto = Literal["sftp", "ftp"]
Stat = tuple[int, float | None]  # (size, mtime) of a remote file
_BATCH = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class PutBatch(Params):
    target: TargetName = Field(description="The drop to upload to")
    batch: str = Field(pattern=_BATCH, description="Export batch in workdir/exports/<batch>")
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
    batch: str = Field(pattern=_BATCH, description="Export batch whose ack to wait for")
    remote_dir: str = Field("outbox", description="Directory with <batch>/ack.json")
    timeout: Duration = Field(timedelta(minutes=2), description="How long to wait for the ack")
    poll: Duration = Field(timedelta(seconds=2), description="How often to look")


class Drop(Protocol):
    def stat(self, path: str) -> Stat | None: ...
    def makedirs(self, path: str) -> None: ...
    def put(self, local: Path, remote: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def read(self, path: str, limit: int = 1 << 20) -> bytes | None: ...
    def sha256(self, path: str) -> str: ...
    def get(self, remote: str, local: Path) -> None: ...


class FtpDrop:
    """The Drop operations over one FTP (or FTPS) control connection, binary mode."""

    def __init__(self, ftp: ftplib.FTP) -> None:
        self.ftp = ftp

    def stat(self, path: str) -> Stat | None:
        try:
            size = self.ftp.size(path)
        except ftplib.error_perm:  # 550: no such file (or a directory)
            return None
        try:
            stamp = self.ftp.voidcmd(f"MDTM {path}").split()[1][:14]
            mtime = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
        except (ftplib.error_perm, IndexError, ValueError):
            mtime = None
        return size or 0, mtime

    def makedirs(self, path: str) -> None:
        current = ""
        for part in [p for p in path.split("/") if p]:
            current = f"{current}/{part}" if current or path.startswith("/") else part
            try:
                self.ftp.mkd(current)
            except ftplib.error_perm:
                pass  # already there; a real refusal shows up at STOR with its own message

    def put(self, local: Path, remote: str) -> None:
        with local.open("rb") as fh:
            self.ftp.storbinary(f"STOR {remote}", fh, blocksize=CHUNK)

    def rename(self, src: str, dst: str) -> None:
        try:
            self.ftp.rename(src, dst)
        except ftplib.error_perm:
            # Some servers refuse to rename onto an existing file.
            self.ftp.delete(dst)
            self.ftp.rename(src, dst)

    def _retr(self, path: str, sink: Callable[[bytes], None]) -> bool:
        try:
            self.ftp.retrbinary(f"RETR {path}", sink, blocksize=CHUNK)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):
                return False
            raise
        return True

    def read(self, path: str, limit: int = 1 << 20) -> bytes | None:
        data = bytearray()
        found = self._retr(path, lambda chunk: data.extend(chunk[: limit - len(data)]))
        return bytes(data) if found else None

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        if not self._retr(path, digest.update):
            raise StepError(f"ftp: {path} disappeared while being read")
        return digest.hexdigest()

    def get(self, remote: str, local: Path) -> None:
        with local.open("wb") as fh:
            if not self._retr(remote, fh.write):
                raise StepError(f"ftp: {remote} does not exist")


@contextmanager
def ftp_session(ctx: StepContext, target: str) -> Iterator[tuple[Drop, str]]:
    """An FtpDrop on `target` (FTPS when `tls: true`) and the drop's root; errors translated."""
    ep = ctx.target(target).ftp
    if ep is None:
        raise StepError(f"target {target!r} has no ftp endpoint in the profile")
    where = f"ftp {ep.username}@{ep.host}:{ep.port} ({target})"
    try:
        password = ctx.secret(ep.password) or ""
    except KeyError as exc:  # SecretRef says which variable or file is missing
        raise StepError(f"{where}: {exc.args[0]}") from exc
    ftp = (
        ftplib.FTP_TLS(context=ssl.create_default_context(), timeout=ep.timeout)
        if ep.tls
        else ftplib.FTP(timeout=ep.timeout)
    )
    try:
        ftp.connect(ep.host, ep.port)
        ftp.login(ep.username, password)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()  # encrypt the data connections too, not only the login
        ftp.voidcmd("TYPE I")  # SIZE and byte counts are only exact in binary mode
    except (OSError, EOFError, ftplib.Error) as exc:
        ftp.close()
        raise ConnectError(f"{where}: cannot connect or log in ({exc})") from exc
    try:
        yield FtpDrop(ftp), ep.root
    except (ftplib.error_perm, ftplib.error_reply, ftplib.error_proto) as exc:
        raise StepError(f"{where}: {exc}") from exc
    except (OSError, EOFError, ftplib.error_temp) as exc:
        raise ConnectError(f"{where}: {exc or type(exc).__name__}") from exc
    finally:
        try:
            ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            ftp.close()


@contextmanager
def session(ctx: StepContext, target: str, proto: Proto) -> Iterator[tuple[Drop, str]]:
    if proto == "sftp":
        with sftp_session(ctx, target) as opened:
            yield opened
    else:
        with ftp_session(ctx, target) as opened:
            yield opened


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
    folder = ctx.workdir / "exports" / batch
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


@action("transfer.sftp_put")
def sftp_put(params: PutBatch, ctx: StepContext) -> Evidence:
    """Upload an export batch over SFTP; files already there and verified are skipped."""
    return put_batch(ctx, params, "sftp")


@action("transfer.ftp_put")
def ftp_put(params: PutBatch, ctx: StepContext) -> Evidence:
    """Upload an export batch over FTP/FTPS; files already there and verified are skipped."""
    return put_batch(ctx, params, "ftp")


@action("transfer.sftp_get")
def sftp_get(params: GetFile, ctx: StepContext) -> Evidence:
    """Download a file over SFTP and verify it against the `.sha256` file beside it."""
    return get_file(ctx, params, "sftp")


@action("transfer.ftp_get")
def ftp_get(params: GetFile, ctx: StepContext) -> Evidence:
    """Download a file over FTP/FTPS and verify it against the `.sha256` file beside it."""
    return get_file(ctx, params, "ftp")


@check("sftp.ack")
def sftp_ack(params: AckCheck, ctx: StepContext) -> Verdict:
    """Passes when the receiver's ack.json says accepted with our manifest's row counts."""
    return wait_for_ack(ctx, params, "sftp")


@check("ftp.ack")
def ftp_ack(params: AckCheck, ctx: StepContext) -> Verdict:
    """Passes when the receiver's ack.json (over FTP) says accepted with our row counts."""
    return wait_for_ack(ctx, params, "ftp")
