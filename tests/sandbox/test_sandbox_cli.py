"""`python -m sandbox up` / `down` as a release engineer runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
FREE = "old=0,new=0,hub=0,sftp=0,ftp=0"


def _wait_for(path: Path, process: subprocess.Popen, limit: float = 30.0) -> dict:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_up_then_down(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    cmd = [
        sys.executable,
        "-m",
        "sandbox",
        "up",
        "--dir",
        str(directory),
        "--ports",
        FREE,
        "--scale",
        "0.1",
        "--fault",
        "old:health-fail",
    ]
    process = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        ready = _wait_for(directory / "ready.json", process)
        assert ready["pid"] == process.pid
        assert set(ready["ports"]) == {"old", "new", "hub", "sftp", "ftp"}
        assert ready["faults"] == ["old:health-fail"]
        assert httpx.get(f"{ready['urls']['old']}/health").json()["status"] == "degraded"
        again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        assert again.returncode == 1 and "already running" in again.stderr
        down = subprocess.run(
            [sys.executable, "-m", "sandbox", "down", "--dir", str(directory)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        out, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "old",
        "new",
        "hub",
        "sftp",
        "ftp",
        "ready",
        "sandbox:",
    ]
    assert not (directory / "ready.json").exists()


def test_bad_fault_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "up", "--dir", str(tmp_path), "--fault", "old:melt"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert (
        done.stderr.startswith("sandbox: cannot start")
        and "unknown fault 'old:melt'" in done.stderr
    )
    assert len(done.stderr.strip().splitlines()) == 1
