"""Shared SSH and SFTP client for `tasks.ssh` and `tasks.transfer`.

Host keys are trusted only from the endpoint's own known_hosts file: never the
user's ~/.ssh/known_hosts, never added automatically. A host not in the file
is refused with the message a person needs to fix it.

`ssh_errors()` is the one place where paramiko and socket exceptions become
ours: a connection, transport or timeout failure is a `ConnectError`; an SFTP
status (no such file, permission denied) is a `StepError`.
"""

from __future__ import annotations

import hashlib
import posixpath
import select
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import paramiko

from cutover.errors import ConnectError, StepError
from cutover.profile import SshEndpoint
from cutover.steps import StepContext

Facet = Literal["ssh", "sftp"]
CHUNK = 1 << 16


class UnknownHostKey(paramiko.SSHException):
    """The server's host key is not in the endpoint's known_hosts file."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        self.hostname = hostname
        self.key_type = key.get_name()
        self.fingerprint = key.fingerprint
        super().__init__(f"{hostname} offered unknown {self.key_type} key {self.fingerprint}")


class RefuseUnknownHosts(paramiko.RejectPolicy):
    """RejectPolicy that keeps what was offered, so the error can show the fingerprint."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise UnknownHostKey(hostname, key)


def local_path(value: str) -> Path:
    """A key or known_hosts path from the profile.

    Relative paths are taken from the working directory, like the profile's
    sqlite URLs, `file:` secrets and workdir (config/sandbox.yaml relies on it).
    """
    return Path(value).expanduser()


def endpoint(ctx: StepContext, target: str, facet: Facet) -> SshEndpoint:
    t = ctx.target(target)
    # SFTP and SSH are the same server, so either facet serves for the other.
    found = (t.sftp or t.ssh) if facet == "sftp" else (t.ssh or t.sftp)
    if found is None:
        raise StepError(f"target {target!r} has no ssh or sftp endpoint in the profile")
    return found


@contextmanager
def ssh_errors(where: str) -> Iterator[None]:
    """Translate paramiko/socket exceptions raised inside into ConnectError/StepError."""
    try:
        yield
    except paramiko.SSHException as exc:
        raise ConnectError(f"{where}: {exc}") from exc
    except (TimeoutError, ConnectionError, EOFError, socket.gaierror) as exc:
        raise ConnectError(f"{where}: {exc or type(exc).__name__}") from exc
    except OSError as exc:  # an SFTP status: the server answered, and said no
        name = f" {exc.filename}" if exc.filename else ""
        raise StepError(f"{where}:{name} {exc.strerror or exc}") from exc


@contextmanager
def connect(ctx: StepContext, target: str, facet: Facet = "ssh") -> Iterator[paramiko.SSHClient]:
    """An authenticated SSHClient to `target`, its host key checked against known_hosts."""
    ep = endpoint(ctx, target, facet)
    where = f"ssh {ep.username}@{ep.host}:{ep.port} ({target})"
    known_hosts = local_path(ep.known_hosts)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(RefuseUnknownHosts())
    try:
        client.load_host_keys(str(known_hosts))
    except OSError as exc:
        raise ConnectError(f"{where}: cannot read known_hosts {known_hosts}: {exc}") from exc
    key_file = str(local_path(ep.key_file)) if ep.key_file else None
    try:
        password = ctx.secret(ep.password)
    except KeyError as exc:  # SecretRef says which variable or file is missing
        raise StepError(f"{where}: {exc.args[0]}") from exc
    try:
        client.connect(
            ep.host,
            port=ep.port,
            username=ep.username,
            key_filename=key_file,
            password=password,
            timeout=ep.timeout,
            banner_timeout=ep.timeout,
            auth_timeout=ep.timeout,
            # Only what the profile names: no agent, no ~/.ssh keys.
            allow_agent=False,
            look_for_keys=False,
        )
    except UnknownHostKey as exc:
        client.close()
        raise ConnectError(
            f"host key for {exc.hostname} is not in {known_hosts}; "
            "add it after verifying its fingerprint",
            evidence={"host": exc.hostname, "key_type": exc.key_type, "offered": exc.fingerprint},
        ) from exc
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise ConnectError(
            f"host key for {ep.host}:{ep.port} does not match {known_hosts} "
            "(the server was reinstalled, or someone is in between); check before replacing it",
            evidence={"offered": exc.key.fingerprint, "expected": exc.expected_key.fingerprint},
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise ConnectError(f"{where}: authentication failed ({exc})") from exc
    except (paramiko.SSHException, OSError) as exc:
        client.close()
        raise ConnectError(f"{where}: cannot connect ({exc})") from exc
    try:
        with ssh_errors(where):
            yield client
    finally:
        client.close()


@dataclass(frozen=True)
class CommandResult:
    exit: int
    stdout: str
    stderr: str


class _Capture:
    """Keeps at most `limit` bytes of a stream; the rest is counted, not kept."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.data = bytearray()
        self.dropped = 0
        self._limit = limit

    def add(self, chunk: bytes) -> None:
        room = self._limit - len(self.data)
        self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        return text + (f"\n... ({self.dropped} more bytes)" if self.dropped else "")


def tail(text: str, limit: int = 2048) -> str:
    """The end of a command's output (where its errors are), for evidence."""
    if len(text) <= limit:
        return text
    return f"... ({len(text) - limit} earlier characters) {text[-limit:]}"


def run(client: paramiko.SSHClient, command: str, idle_timeout: float) -> CommandResult:
    """Run `command`; fails when it prints nothing for `idle_timeout` seconds.

    stdout and stderr are drained together (select on the channel), so a command
    that writes a lot to one of them cannot stall on a full window.
    """
    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("connection closed")
    chan = transport.open_session(timeout=idle_timeout)
    out, err = _Capture(), _Capture()
    slice_s, idle = 0.5, 0.0
    with chan:
        chan.exec_command(command)
        chan.shutdown_write()
        while True:
            ready, _, _ = select.select([chan], [], [], slice_s)
            drained = False
            while chan.recv_ready():
                out.add(chan.recv(CHUNK))
                drained = True
            while chan.recv_stderr_ready():
                err.add(chan.recv_stderr(CHUNK))
                drained = True
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            # Idle time is counted in select slices, not read from a clock: it is a
            # network safeguard, and virtual rehearsal time must not shorten it.
            idle = 0.0 if (ready or drained) else idle + slice_s
            if idle >= idle_timeout:
                raise StepError(
                    f"{command!r} printed nothing for {idle_timeout:g}s; gave up waiting",
                    evidence={"stdout": tail(out.text()), "stderr": tail(err.text())},
                )
        return CommandResult(chan.recv_exit_status(), out.text(), err.text())


class SftpDrop:
    """The file operations transfers need, over one SFTP session."""

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp

    def stat(self, path: str) -> tuple[int, float | None] | None:
        """(size, mtime) of a regular file, or None when there is none."""
        try:
            attr = self.sftp.stat(path)
        except FileNotFoundError:
            return None
        if attr.st_mode is not None and not stat.S_ISREG(attr.st_mode):
            return None
        return attr.st_size or 0, attr.st_mtime

    def makedirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        current = "/" if path.startswith("/") else ""
        for part in parts:
            current = posixpath.join(current, part) if current else part
            try:
                self.sftp.stat(current)
            except FileNotFoundError:
                self.sftp.mkdir(current)

    def put(self, local: Path, remote: str) -> None:
        with local.open("rb") as fh:
            self.sftp.putfo(fh, remote, file_size=local.stat().st_size, confirm=True)

    def rename(self, src: str, dst: str) -> None:
        """Rename, replacing `dst`: posix-rename where offered, else remove then rename."""
        try:
            self.sftp.posix_rename(src, dst)
            return
        except OSError:
            pass  # extension not offered; SFTP v3 rename refuses an existing target
        if self.stat(dst) is not None:
            self.sftp.remove(dst)
        self.sftp.rename(src, dst)

    def read(self, path: str, limit: int = 1 << 20) -> bytes | None:
        try:
            with self.sftp.open(path, "rb") as fh:
                return fh.read(limit)
        except FileNotFoundError:
            return None

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with self.sftp.open(path, "rb") as fh:
            fh.prefetch()
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def get(self, remote: str, local: Path) -> None:
        self.sftp.get(remote, str(local))


@contextmanager
def sftp_session(ctx: StepContext, target: str) -> Iterator[tuple[SftpDrop, str]]:
    """An SftpDrop on `target` and the remote root directory of the drop."""
    ep = endpoint(ctx, target, "sftp")
    with connect(ctx, target, "sftp") as client:
        sftp = client.open_sftp()
        try:
            yield SftpDrop(sftp), ep.root
        finally:
            sftp.close()
