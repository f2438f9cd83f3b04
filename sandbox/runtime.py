"""One sandbox: data, the five servers and the receiving agent, started together.

`Sandbox` is what both the CLI (`python -m sandbox up`) and the tests
(`sandbox.testing.running_sandbox`) drive. Everything lives under one
directory, so two sandboxes (a demo and a test run) never share state.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sandbox.data import apply_data_fault, build_databases
from sandbox.drop import FtpServer, SshServer
from sandbox.faults import FaultSet, validate
from sandbox.keys import ensure_ed25519, ensure_password, write_known_hosts
from sandbox.receiver import Receiver
from sandbox.systems import HubService, SystemService
from sandbox.web import BackgroundServer, Router

DEFAULT_PORTS: dict[str, int] = {
    "old": 18401,
    "new": 18402,
    "hub": 18403,
    "sftp": 18422,
    "ftp": 18421,
}
SERVERS = tuple(DEFAULT_PORTS)


@dataclass(frozen=True)
class SandboxOptions:
    directory: Path
    scale: float = 1.0
    faults: tuple[str, ...] = ()
    ports: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(SERVERS, 0))
    reset: bool = False


class Sandbox:
    """Owns every server of one sandbox; `start()` returns once all of them listen."""

    def __init__(self, options: SandboxOptions) -> None:
        for spec in options.faults:
            validate(spec)
        unknown = set(options.ports) - set(SERVERS)
        if unknown:
            raise ValueError(f"unknown server(s) {sorted(unknown)} in ports; known: {SERVERS}")
        self.options = options
        self.dir = options.directory.resolve()
        self.faults = FaultSet(options.faults)
        self.timings: dict[str, float | int] = {}
        self.systems: dict[str, SystemService] = {}
        self.hub = HubService()
        self._receiver: Receiver | None = None
        self._http: dict[str, BackgroundServer] = {}
        self._ssh: SshServer | None = None
        self._ftp: FtpServer | None = None

    # --- addresses --------------------------------------------------------------------

    @property
    def old_url(self) -> str:
        return self._http["old"].url

    @property
    def new_url(self) -> str:
        return self._http["new"].url

    @property
    def hub_url(self) -> str:
        return self._http["hub"].url

    @property
    def sftp_port(self) -> int:
        assert self._ssh is not None, "sandbox not started"
        return self._ssh.port

    @property
    def ftp_port(self) -> int:
        assert self._ftp is not None, "sandbox not started"
        return self._ftp.port

    @property
    def profile_path(self) -> Path:
        return self.dir / "profile.yaml"

    @property
    def drop(self) -> Path:
        return self.dir / "drop"

    def ports(self) -> dict[str, int]:
        return {
            **{n: s.port for n, s in self._http.items()},
            "sftp": self.sftp_port,
            "ftp": self.ftp_port,
        }

    # --- life cycle -----------------------------------------------------------------------

    def _prepare_data(self) -> None:
        """Build the databases unless ones built the same way (scale, data faults) exist.

        A rebuild also empties the drop and the receiver's database: an ack for a
        batch of the old data would otherwise answer for the new data.
        """
        data_faults = tuple(
            sorted(s.split(":", 1)[1] for s in self.options.faults if s.startswith("data:"))
        )
        stamp_path = self.dir / "data.json"
        wanted = {"scale": self.options.scale, "data_faults": list(data_faults)}
        try:
            stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stamp = None
        present = all((self.dir / f).exists() for f in ("old.db", "new.db"))
        if not self.options.reset and present and stamp == wanted:
            return
        for name in ("old.db", "new.db", "receiver.db"):
            for suffix in ("", "-wal", "-shm"):
                (self.dir / (name + suffix)).unlink(missing_ok=True)
        shutil.rmtree(self.drop, ignore_errors=True)
        self.timings.update(build_databases(self.dir, self.options.scale, data_faults))
        stamp_path.write_text(json.dumps(wanted), encoding="utf-8")

    def _on_fault(self, spec: str, active: bool) -> None:
        if spec.startswith("data:"):
            apply_data_fault(self.dir / "old.db", spec.split(":", 1)[1], clear=not active)

    def start(self) -> Sandbox:
        started = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._prepare_data()
        for sub in ("inbox", "outbox"):
            (self.drop / sub).mkdir(parents=True, exist_ok=True)
        self.faults.subscribe(self._on_fault)
        ports = {**dict.fromkeys(SERVERS, 0), **self.options.ports}
        for name in ("old", "new"):
            system = SystemService(
                name, self.dir / f"{name}.db", self.faults, running=name == "old"
            )
            self.systems[name] = system
            self._http[name] = BackgroundServer(
                name, Router(system.routes(), system.record), ports[name]
            )
        self._http["hub"] = BackgroundServer("hub", Router(self.hub.routes()), ports["hub"])
        self._receiver = Receiver(self.drop, self.dir / "receiver.db", self.faults)
        host_key = ensure_ed25519(self.dir / "ssh_host_key")
        self._ssh = SshServer(
            workdir=self.dir,
            drop=self.drop,
            host_key=host_key,
            port=ports["sftp"],
            client_key=ensure_ed25519(self.dir / "client_key"),
            on_change=self._receiver.kick,
        )
        self._ftp = FtpServer(
            drop=self.drop,
            password=ensure_password(self.dir / "ftp_password"),
            on_change=self._receiver.kick,
            port=ports["ftp"],
        )
        write_known_hosts(self.dir / "known_hosts", self._ssh.port, host_key)
        for server in self._all_servers():
            server.start()
        self._receiver.start()
        self.write_profile()
        self.timings["start_s"] = round(time.perf_counter() - started, 3)
        return self

    def _all_servers(self) -> list[BackgroundServer | SshServer | FtpServer]:
        extra = [s for s in (self._ssh, self._ftp) if s is not None]
        return [*self._http.values(), *extra]

    def stop(self) -> None:
        """Stop whatever was started; safe after a start that failed half-way."""
        stoppers = [*self._all_servers(), *([self._receiver] if self._receiver else [])]
        # In parallel: each waits for its own poll interval, so serially they add up.
        threads = [threading.Thread(target=s.stop, daemon=True) for s in stoppers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

    # --- test helpers ------------------------------------------------------------------------

    def fault(self, spec: str) -> None:
        """Turn a fault on (`old:health-fail`, `receiver:reject`, `data:in-flight`, ...)."""
        self.faults.add(spec)

    def clear_fault(self, spec: str) -> None:
        self.faults.discard(spec)

    def audit(self, system: str) -> list[dict]:
        """Admin calls the `old` or `new` system received, oldest first."""
        return self.systems[system].audit()

    def notifications(self) -> list[dict]:
        return self.hub.sent()

    # --- profile ---------------------------------------------------------------------------------

    def profile(self) -> dict:
        """The environment profile for this sandbox, with its real ports and paths."""
        d = self.dir
        ssh = {
            "host": "127.0.0.1",
            "port": self.sftp_port,
            "username": "cutover",
            "known_hosts": str(d / "known_hosts"),
            "key_file": str(d / "client_key"),
        }
        return {
            "name": "sandbox",
            "description": f"Embedded sandbox in {d}",
            "ledger": f"sqlite:///{d}/ledger.db",
            "workdir": str(d / "work"),
            "targets": {
                "old-system": {
                    "description": "Old social-insurance system (source of the cutover)",
                    "http": {"url": self.old_url},
                    "database": {"url": f"sqlite:///{d}/old.db"},
                },
                "new-system": {
                    "description": "New social-insurance system (target of the cutover)",
                    "http": {"url": self.new_url},
                    "database": {"url": f"sqlite:///{d}/new.db"},
                    "ssh": {**ssh, "root": str(d)},
                },
                "tax-drop": {
                    "description": "SFTP drop shared with the tax bureau",
                    "sftp": {**ssh, "root": "/"},
                },
                "tax-ftp": {
                    "description": "FTP view of the same drop",
                    "ftp": {
                        "host": "127.0.0.1",
                        "port": self.ftp_port,
                        "username": "cutover",
                        "password": {"secret": f"file:{d}/ftp_password"},
                        "root": "/",
                    },
                },
                "notify-hub": {
                    "description": "Notification hub",
                    "notify": {"url": self.hub_url},
                    "http": {"url": self.hub_url},
                },
                "receiver-db": {
                    "description": "The tax bureau's database, loaded by its agent",
                    "database": {"url": f"sqlite:///{d}/receiver.db"},
                },
            },
        }

    def write_profile(self) -> Path:
        text = yaml.safe_dump(self.profile(), sort_keys=False)
        tmp = self.profile_path.with_name("profile.yaml.tmp")
        tmp.write_text(
            f"# Written by the sandbox at start-up; ports change per run.\n{text}", encoding="utf-8"
        )
        tmp.replace(self.profile_path)
        return self.profile_path
