"""The drop shared with the tax bureau: a real SSH/SFTP server and an FTP server.

Both serve `<dir>/drop`. The SSH server is paramiko's server side: public-key
auth for `cutover`, an SFTP subsystem rooted at the drop (paths leaving it are
refused), and `exec` requests run with `/bin/sh -c` in `<dir>` so SSH steps
have something real to drive. The FTP server is pyftpdlib, driven one loop
iteration at a time from our own thread so that stopping it is immediate.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import paramiko
from paramiko import SFTPAttributes, SFTPHandle, SFTPServer, SFTPServerInterface
from paramiko.sftp import SFTP_FAILURE, SFTP_OK, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED

# Server-side transports log here (see set_log_channel below): clients hanging up
# mid-session is normal in a sandbox and must not be printed as an error.
logging.getLogger("sandbox.ssh").addHandler(logging.NullHandler())

with warnings.catch_warnings():
    # pyftpdlib 2.2 imports asyncore/asynchat, deprecated on Python 3.11 (vendored from 3.12);
    # the test suite runs with warnings as errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

USER = "cutover"
OnChange = Callable[[str], None]


class _Handle(SFTPHandle):
    def __init__(self, flags: int, path: str, on_close: OnChange) -> None:
        super().__init__(flags)
        self._path = path
        self._on_close = on_close

    def stat(self) -> SFTPAttributes | int:
        try:
            return SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def close(self) -> None:
        super().close()
        self._on_close(self._path)


class _Sftp(SFTPServerInterface):
    """File operations on the drop; every path is checked against the root."""

    def __init__(self, server: paramiko.ServerInterface, root: str, on_change: OnChange) -> None:
        super().__init__(server)
        self._root = os.path.realpath(root)
        self._on_change = on_change

    def _real(self, path: str) -> str | None:
        joined = os.path.realpath(os.path.join(self._root, path.lstrip("/")))
        if os.path.commonpath([joined, self._root]) != self._root:
            return None  # leaves the drop: refused, never clamped
        return joined

    def canonicalize(self, path: str) -> str:
        relative = os.path.relpath(self._real(path) or self._root, self._root)
        return "/" if relative == "." else "/" + relative

    def list_folder(self, path: str) -> list[SFTPAttributes] | int:
        real = self._real(path)
        if real is None:
            return SFTP_PERMISSION_DENIED
        try:
            return [
                SFTPAttributes.from_stat(os.stat(os.path.join(real, n)), n)
                for n in sorted(os.listdir(real))
            ]
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def stat(self, path: str) -> SFTPAttributes | int:
        real = self._real(path)
        if real is None:
            return SFTP_PERMISSION_DENIED
        try:
            return SFTPAttributes.from_stat(os.stat(real))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    lstat = stat

    def open(self, path: str, flags: int, attr: SFTPAttributes) -> SFTPHandle | int:
        real = self._real(path)
        if real is None:
            return SFTP_PERMISSION_DENIED
        try:
            fd = os.open(real, flags, getattr(attr, "st_mode", None) or 0o644)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        if flags & os.O_WRONLY:
            mode = "ab" if flags & os.O_APPEND else "wb"
        elif flags & os.O_RDWR:
            mode = "a+b" if flags & os.O_APPEND else "r+b"
        else:
            mode = "rb"
        handle = _Handle(flags, real, self._on_change)
        handle.readfile = handle.writefile = os.fdopen(fd, mode)
        return handle

    def _do(self, action: Callable[[], object], *paths: str | None) -> int:
        if any(p is None for p in paths):
            return SFTP_PERMISSION_DENIED
        try:
            action()
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    def remove(self, path: str) -> int:
        real = self._real(path)
        return self._do(lambda: os.remove(real), real)

    def rename(self, oldpath: str, newpath: str) -> int:
        """SFTP v3 rename refuses an existing target, as OpenSSH does."""
        new = self._real(newpath)
        if new is not None and os.path.exists(new):
            return SFTP_FAILURE
        return self.posix_rename(oldpath, newpath)

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        old, new = self._real(oldpath), self._real(newpath)
        result = self._do(lambda: os.replace(old, new), old, new)
        if result == SFTP_OK:
            self._on_change(new)
        return result

    def mkdir(self, path: str, attr: SFTPAttributes) -> int:
        real = self._real(path)
        return self._do(lambda: os.mkdir(real), real)

    def rmdir(self, path: str) -> int:
        real = self._real(path)
        return self._do(lambda: os.rmdir(real), real)

    def chattr(self, path: str, attr: SFTPAttributes) -> int:
        real = self._real(path)
        return self._do(lambda: SFTPServer.set_file_attr(real, attr), real)

    def symlink(self, target_path: str, path: str) -> int:
        return SFTP_OP_UNSUPPORTED

    def readlink(self, path: str) -> str | int:
        return SFTP_OP_UNSUPPORTED


class _Session(paramiko.ServerInterface):
    """Authenticates `cutover` by the sandbox's client key and runs exec requests."""

    def __init__(self, client_key: paramiko.PKey, workdir: Path) -> None:
        self._client_key = client_key
        self._workdir = workdir

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == USER and key.asbytes() == self._client_key.asbytes():
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self._exec, args=(channel, command.decode()), daemon=True).start()
        return True

    def _exec(self, channel: paramiko.Channel, command: str) -> None:
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=self._workdir,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
            status, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired:
            status, out, err = 124, b"", b"sandbox: command timed out after 120 s\n"
        try:
            channel.sendall(out)
            channel.sendall_stderr(err)
            channel.send_exit_status(status)
        finally:
            channel.close()


class SshServer:
    """SSH on 127.0.0.1: one paramiko Transport per client connection."""

    def __init__(
        self,
        *,
        workdir: Path,
        drop: Path,
        host_key: paramiko.PKey,
        client_key: paramiko.PKey,
        on_change: OnChange,
        port: int = 0,
    ) -> None:
        self._workdir, self._drop = workdir, drop
        self._host_key, self._client_key = host_key, client_key
        self._on_change = on_change
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(32)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._thread = threading.Thread(target=self._serve, name="sandbox-ssh", daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            transport = paramiko.Transport(conn)
            # A client hanging up is normal here; paramiko would print it to stderr.
            transport.set_log_channel("sandbox.ssh")
            transport.add_server_key(self._host_key)
            transport.set_subsystem_handler(
                "sftp", SFTPServer, _Sftp, str(self._drop), self._on_change
            )
            # An event makes start_server return at once; the Transport has its own thread.
            session = _Session(self._client_key, self._workdir)
            transport.start_server(event=threading.Event(), server=session)
            self._transports = [t for t in self._transports if t.is_active()] + [transport]

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()
        for transport in self._transports:
            transport.close()


class FtpServer:
    """pyftpdlib on the drop, user `cutover` with the generated password."""

    def __init__(self, *, drop: Path, password: str, on_change: OnChange, port: int = 0) -> None:
        quiet = logging.getLogger("pyftpdlib")
        if not quiet.handlers:
            # Otherwise pyftpdlib configures stderr logging itself on its first loop.
            quiet.addHandler(logging.NullHandler())
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, password, str(drop), perm="elradfmwMT")

        class _Handler(FTPHandler):
            banner = "cutover sandbox drop"
            auth_failed_timeout = 0.2  # pyftpdlib waits 3 s after a bad password

            def on_file_received(self, file: str) -> None:
                on_change(file)

        _Handler.authorizer = authorizer
        # Its own IO loop: the default one is process-wide, and closing it would
        # close every other sandbox's FTP server in the same process.
        self._server = FTPServer(("127.0.0.1", port), _Handler, ioloop=IOLoop())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sandbox-ftp", daemon=True)

    @property
    def port(self) -> int:
        return self._server.socket.getsockname()[1]

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        # One loop iteration at a time: the IO loop is only touched from this thread.
        # (serve_forever would log a start banner on every iteration.)
        while not self._stop.is_set():
            self._server.ioloop.loop(0.1, blocking=False)
        self._server.close_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        else:
            self._server.close_all()
