"""The drop: a real SSH/SFTP server (paramiko) and FTP server (pyftpdlib)."""

from __future__ import annotations

import ftplib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
import pytest

from sandbox.keys import ensure_ed25519
from sandbox.runtime import Sandbox


@contextmanager
def ssh_client(
    sb: Sandbox, known_hosts: Path | None = None, key_file: Path | None = None
) -> Iterator[paramiko.SSHClient]:
    """A client as the step library makes one: RejectPolicy, our known_hosts only."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or sb.dir / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            "127.0.0.1",
            port=sb.sftp_port,
            username="cutover",
            key_filename=str(key_file or sb.dir / "client_key"),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        yield client
    finally:
        client.close()


def test_sftp_upload_list_download(sandbox: Sandbox) -> None:
    with ssh_client(sandbox) as client, client.open_sftp() as sftp:
        assert sftp.normalize(".") == "/"
        assert sorted(sftp.listdir("/")) == ["inbox", "outbox"]
        sftp.mkdir("/inbox/t-upload")
        sftp.putfo(io.BytesIO(b"a,b\n1,2\n"), "/inbox/t-upload/x.csv.part")
        sftp.rename("/inbox/t-upload/x.csv.part", "/inbox/t-upload/x.csv")
        assert sftp.listdir("/inbox/t-upload") == ["x.csv"]
        assert sftp.stat("/inbox/t-upload/x.csv").st_size == 8
        out = io.BytesIO()
        sftp.getfo("/inbox/t-upload/x.csv", out)
        assert out.getvalue() == b"a,b\n1,2\n"
        # SFTP v3 rename refuses to overwrite (as OpenSSH does); posix_rename replaces.
        sftp.putfo(io.BytesIO(b"new"), "/inbox/t-upload/y.part")
        with pytest.raises(OSError):
            sftp.rename("/inbox/t-upload/y.part", "/inbox/t-upload/x.csv")
        sftp.posix_rename("/inbox/t-upload/y.part", "/inbox/t-upload/x.csv")
        sftp.remove("/inbox/t-upload/x.csv")
        sftp.rmdir("/inbox/t-upload")
    assert not (sandbox.drop / "inbox" / "t-upload").exists()


def test_sftp_refuses_paths_outside_the_drop(sandbox: Sandbox) -> None:
    with ssh_client(sandbox) as client, client.open_sftp() as sftp:
        with pytest.raises(PermissionError):
            sftp.open("../escaped.txt", "w")
        with pytest.raises(PermissionError):
            sftp.stat("/../old.db")
        with pytest.raises(PermissionError):
            sftp.listdir("inbox/../../")
    assert not (sandbox.dir / "escaped.txt").exists()


def test_unknown_host_key_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        with ssh_client(sandbox, known_hosts=empty):
            pass
    other = paramiko.Ed25519Key(filename=str(sandbox.dir / "client_key"))  # not the host key
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sandbox.sftp_port} {other.get_name()} {other.get_base64()}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        with ssh_client(sandbox, known_hosts=wrong):
            pass


def test_unknown_client_key_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    ensure_ed25519(stranger)
    with pytest.raises(paramiko.AuthenticationException):
        with ssh_client(sandbox, key_file=stranger):
            pass


def test_exec_runs_in_the_sandbox_dir(sandbox: Sandbox) -> None:
    with ssh_client(sandbox) as client:
        _, stdout, stderr = client.exec_command("echo hello; pwd; echo oops >&2; exit 3")
        assert stdout.channel.recv_exit_status() == 3
        assert stdout.read().decode().split() == ["hello", str(sandbox.dir)]
        assert stderr.read() == b"oops\n"
        _, stdout, _ = client.exec_command("test -f old.db && echo found")
        assert stdout.channel.recv_exit_status() == 0
        assert stdout.read() == b"found\n"


def _ftp(sb: Sandbox, password: str | None = None) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", sb.ftp_port, timeout=10)
    ftp.login("cutover", password or (sb.dir / "ftp_password").read_text().strip())
    return ftp


def test_ftp_upload_and_download(sandbox: Sandbox) -> None:
    assert (sandbox.dir / "ftp_password").stat().st_mode & 0o777 == 0o600
    ftp = _ftp(sandbox)
    try:
        ftp.mkd("/inbox/t-ftp")
        ftp.storbinary("STOR /inbox/t-ftp/data.csv", io.BytesIO(b"id\n1\n"))
        assert ftp.nlst("/inbox/t-ftp") == ["data.csv"]
        out = io.BytesIO()
        ftp.retrbinary("RETR /inbox/t-ftp/data.csv", out.write)
        assert out.getvalue() == b"id\n1\n"
        ftp.delete("/inbox/t-ftp/data.csv")
        ftp.rmd("/inbox/t-ftp")
    finally:
        ftp.quit()
    with pytest.raises(ftplib.error_perm):
        _ftp(sandbox, password="wrong")
