"""Shared fixtures: the embedded sandbox, real servers on 127.0.0.1 free ports.

`sandbox` is started once per session; tests that change its state (stop a
channel, set a fault, freeze a database) use `fresh_sandbox` instead, which
costs a fraction of a second because the data builds in about 0.15 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.runtime import Sandbox
from sandbox.testing import running_sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox for the whole session; treat it as read-only."""
    with running_sandbox(tmp_path_factory.mktemp("sandbox")) as running:
        yield running


@pytest.fixture
def fresh_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox of its own for a test that changes state."""
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running
