"""FTP and FTPS client for `tasks.transfer`: the drop operations over ftplib.

`ftp_session()` is the one place where ftplib and socket exceptions become
ours: a refused command or a protocol error is a `StepError`; a lost
connection, a timeout or a temporary (4xx) reply is a `ConnectError`.
"""

from __future__ import annotations

import ftplib
import hashlib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cutover.errors import ConnectError, StepError
from cutover.steps import StepContext
from tasks._ssh import CHUNK


class FtpDrop:
    """The `tasks.transfer.Drop` operations over one FTP (or FTPS) connection, binary mode."""

    def __init__(self, ftp: ftplib.FTP) -> None:
        self.ftp = ftp

    def stat(self, path: str) -> tuple[int, float | None] | None:
        """(size, mtime) of a file, or None when there is none."""
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
def ftp_session(ctx: StepContext, target: str) -> Iterator[tuple[FtpDrop, str]]:
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
