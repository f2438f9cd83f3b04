"""Keys and secrets the sandbox makes for itself, once per directory.

Files holding secrets are created with mode 0600 from the start (os.open), so
no other user can read them even for an instant.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file 0600 via a temp name, so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def ensure_ed25519(path: Path) -> paramiko.PKey:
    """Load the OpenSSH ed25519 key at `path`, generating it (and `.pub`) if absent."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        write_private(path, pem)
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        path.with_name(path.name + ".pub").write_bytes(public + b" cutover@sandbox\n")
    return paramiko.Ed25519Key(filename=str(path))


def ensure_password(path: Path) -> str:
    """The FTP password, generated once; the profile refers to the file, not the value."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(18).encode() + b"\n")
    return path.read_text(encoding="utf-8").strip()


def write_known_hosts(path: Path, port: int, host_key: paramiko.PKey) -> None:
    """One known_hosts line for the SSH server, in the bracketed host:port form."""
    host = "127.0.0.1" if port == 22 else f"[127.0.0.1]:{port}"
    path.write_text(f"{host} {host_key.get_name()} {host_key.get_base64()}\n", encoding="utf-8")
