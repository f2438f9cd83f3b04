"""A dedicated local Prefect server for the demo, the UI and the tests.

PREFECT.md §6/§8: the ephemeral server races on migrations and loses its UI with
the process, so we run `prefect server start` once, on loopback, with its own
PREFECT_HOME, and point clients at it. PREFECT_SERVER_API_PORT (not --port) makes
the bundled UI call the right port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cutover.errors import CutoverError

DEFAULT_PORT = 4299


def api_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}/api"


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def server_env(home: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
    )
    return env


ZOMBIE_AUTOMATION = "cutover-crash-zombie-flow-runs"


def start(home: Path, port: int = DEFAULT_PORT, *, timeout: float = 120.0) -> str:
    """Start a server in the background unless one already answers; return its API URL."""
    url = api_url(port)
    if is_healthy(url):
        ensure_zombie_automation(url)
        return url
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "ab")  # noqa: SIM115 (handed to the child process)
    prefect = Path(sys.executable).with_name("prefect")
    process = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env(home, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (home / "server.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CutoverError(f"the Prefect server exited at once; see {home / 'server.log'}")
        if is_healthy(url):
            ensure_zombie_automation(url)
            return url
        time.sleep(0.5)
    raise CutoverError(
        f"the Prefect server did not answer within {timeout:.0f}s; see {home / 'server.log'}"
    )


def stop(home: Path) -> bool:
    """Stop the server started by `start`; False if none was running."""
    pid_file = home / "server.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def ensure_zombie_automation(url: str, *, heartbeat_seconds: int = 180) -> None:
    """Mark a run Crashed when its heartbeats stop (a killed process), as PREFECT.md §2 says.

    Without it a SIGKILLed run stays Running forever. Paused and Suspended are in the
    `expect` set: a run waiting for a go/no-go sends no heartbeats and must not be
    crashed for it (the automation as documented by Prefect does crash those).
    """
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}):
        try:
            Automation.read(name=ZOMBIE_AUTOMATION)
            return
        except ValueError:
            pass  # not there yet
        Automation(
            name=ZOMBIE_AUTOMATION,
            description="Crash flow runs whose process stopped sending heartbeats",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                        "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                        "prefect.flow-run.Crashed", "prefect.flow-run.Paused",
                        "prefect.flow-run.Suspended"},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=3 * heartbeat_seconds),
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                        message="no heartbeat: the process running it died")],
        ).create()
