"""Environment profiles: where the systems a runbook names actually are.

A profile maps target names (used in runbooks) to endpoints: an HTTP admin base
URL, a SQLAlchemy database URL, SSH/SFTP and FTP drops, a notification webhook.
Secrets are `SecretRef`s, never values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cutover.types import SecretRef


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpEndpoint(_Model):
    url: str = Field(description="Base URL of the system's admin/health API")
    token: SecretRef | None = Field(None, description="Bearer token, if the API needs one")
    timeout: float = Field(10.0, description="Seconds per request")
    verify: bool | str = Field(
        True, description="TLS verification: true, false or a CA bundle path"
    )


class DatabaseEndpoint(_Model):
    url: str = Field(description="SQLAlchemy URL without the password")
    password: SecretRef | None = None


class SshEndpoint(_Model):
    host: str
    port: int = 22
    username: str
    known_hosts: str = Field(description="known_hosts file; unknown host keys are refused")
    key_file: str | None = Field(None, description="Private key file")
    password: SecretRef | None = None
    root: str = Field("/", description="Remote directory the drop lives in")
    timeout: float = 15.0


class FtpEndpoint(_Model):
    host: str
    port: int = 21
    username: str
    password: SecretRef | None = None
    tls: bool = Field(False, description="Use explicit FTPS (AUTH TLS)")
    root: str = "/"
    timeout: float = 15.0


class Target(_Model):
    """One system or drop. A system may expose several facets at once."""

    description: str = ""
    http: HttpEndpoint | None = None
    database: DatabaseEndpoint | None = None
    ssh: SshEndpoint | None = None
    sftp: SshEndpoint | None = None
    ftp: FtpEndpoint | None = None
    notify: HttpEndpoint | None = Field(None, description="Webhook that accepts notifications")


class Profile(_Model):
    name: str
    description: str = ""
    targets: dict[str, Target]
    ledger: str | None = Field(None, description="SQLAlchemy URL of the ledger")
    workdir: str | None = Field(None, description="Where exports, backups and reports go")

    # Where the profile was loaded from (for messages). Relative paths in a profile are
    # relative to the directory commands run in, as with any command-line tool.
    source: Path | None = Field(None, exclude=True)
