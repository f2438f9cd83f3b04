"""`python -m sandbox up|down`: run the sandbox in the foreground, or stop one.

    python -m sandbox up --dir .sandbox [--scale N] [--fault SPEC]... [--reset]
                         [--ports old=18401,new=18402,hub=18403,sftp=18422,ftp=18421]
                         [--config config/sandbox.yaml]
    python -m sandbox down --dir .sandbox

`up` writes `<dir>/ready.json` (pid, ports, urls) once every server listens and
removes it on SIGTERM/SIGINT; `down` sends SIGTERM to that pid and waits.
This module is the only place in the package that prints or exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from sandbox.runtime import DEFAULT_PORTS, SERVERS, Sandbox, SandboxOptions

_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
_PORT = re.compile(r":(\d+)(?:/|$)")


def _parse_ports(text: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in SERVERS or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"bad --ports item {item!r}; write name=port with name in {', '.join(SERVERS)}"
            )
        ports[name.strip()] = int(value)
    return ports


def _config_ports(path: Path) -> dict[str, int]:
    """Ports named by a sandbox profile, so the demo profile and the servers agree."""
    text = _VAR.sub(lambda m: os.environ.get(m[1], m[2] or ""), path.read_text(encoding="utf-8"))
    targets = (yaml.safe_load(text) or {}).get("targets", {})
    found: dict[str, int] = {}
    for server, target, facet in (
        ("old", "old-system", "http"),
        ("new", "new-system", "http"),
        ("hub", "notify-hub", "notify"),
    ):
        match = _PORT.search(str(targets.get(target, {}).get(facet, {}).get("url", "")))
        if match:
            found[server] = int(match[1])
    for server, target, facet in (("sftp", "tax-drop", "sftp"), ("ftp", "tax-ftp", "ftp")):
        port = targets.get(target, {}).get(facet, {}).get("port")
        if port:
            found[server] = int(port)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_pid(ready: Path) -> int | None:
    try:
        pid = int(json.loads(ready.read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if _alive(pid) else None


def up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    ready = directory / "ready.json"
    pid = _running_pid(ready)
    if pid is not None:
        print(f"sandbox: already running in {directory} (pid {pid})", file=sys.stderr)
        return 1
    ports = dict(DEFAULT_PORTS)
    if args.config:
        ports.update(_config_ports(Path(args.config)))
    ports.update(args.ports or {})
    options = SandboxOptions(directory, args.scale, tuple(args.fault), ports, args.reset)
    try:
        sandbox = Sandbox(options)
        sandbox.start()
    except (OSError, ValueError) as exc:
        print(f"sandbox: cannot start in {directory}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        info = {
            "pid": os.getpid(),
            "ports": sandbox.ports(),
            "dir": str(sandbox.dir),
            "urls": {"old": sandbox.old_url, "new": sandbox.new_url, "hub": sandbox.hub_url},
            "profile": str(sandbox.profile_path),
            "faults": sandbox.faults.names(),
            "timings": sandbox.timings,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        tmp = ready.with_name("ready.json.tmp")
        tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
        tmp.replace(ready)
        _announce(sandbox)
        while not stop.wait(0.5):
            pass
    finally:
        ready.unlink(missing_ok=True)
        sandbox.stop()
    print("sandbox: stopped", flush=True)
    return 0


def _announce(sandbox: Sandbox) -> None:
    lines = [
        f"old   {sandbox.old_url}  old system, every channel running",
        f"new   {sandbox.new_url}  new system, every channel stopped",
        f"hub   {sandbox.hub_url}  notification hub",
        f"sftp  sftp://cutover@127.0.0.1:{sandbox.sftp_port}  key {sandbox.dir}/client_key",
        f"ftp   ftp://cutover@127.0.0.1:{sandbox.ftp_port}  password in {sandbox.dir}/ftp_password",
    ]
    timings = sandbox.timings
    data = (
        f"data built in {timings['generate_s'] + timings['write_s']:.2f} s, "
        if ("generate_s" in timings)
        else "data reused, "
    )
    lines.append(
        f"ready {data}started in {timings['start_s']:.2f} s; profile "
        f"{sandbox.profile_path}; pid {os.getpid()}"
    )
    print("\n".join(lines), flush=True)


def down(args: argparse.Namespace) -> int:
    ready = Path(args.dir) / "ready.json"
    pid = _running_pid(ready)
    if pid is None:
        ready.unlink(missing_ok=True)  # stale: its process is gone
        print(f"sandbox: none running in {args.dir}")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not _alive(pid) or not ready.exists():
            print(f"sandbox: stopped pid {pid}")
            return 0
        time.sleep(0.1)
    print(f"sandbox: pid {pid} did not stop within 15 s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="run the sandbox until SIGTERM/SIGINT")
    start.add_argument("--dir", default=".sandbox", help="state directory (default .sandbox)")
    start.add_argument("--scale", type=float, default=1.0, help="data volume factor (default 1)")
    start.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="fault to start with, e.g. old:refuse-stop:core (repeatable)",
    )
    start.add_argument(
        "--ports",
        type=_parse_ports,
        metavar="NAME=PORT,...",
        help="override ports; defaults " + ",".join(f"{k}={v}" for k, v in DEFAULT_PORTS.items()),
    )
    start.add_argument("--config", help="take the ports from this sandbox profile")
    start.add_argument("--reset", action="store_true", help="rebuild data and empty the drop")
    stop = commands.add_parser("down", help="stop the sandbox running in --dir")
    stop.add_argument("--dir", default=".sandbox")
    args = parser.parse_args(argv)
    return up(args) if args.command == "up" else down(args)


if __name__ == "__main__":
    sys.exit(main())
