"""Run a sandbox inside a test: `with running_sandbox(tmp_path) as sb: ...`.

The servers run in threads of the test process on free ports (port 0), so
many sandboxes can run side by side; the profile at `sb.profile_path` carries
the ports the operating system chose.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from sandbox.runtime import SERVERS, Sandbox, SandboxOptions


@contextmanager
def running_sandbox(
    directory: Path | str,
    faults: Iterable[str] = (),
    scale: float = 1.0,
    ports: Mapping[str, int] | None = None,
    reset: bool = True,
) -> Iterator[Sandbox]:
    """Start every server, yield the running `Sandbox`, stop them all on exit.

    `reset=True` (the default) rebuilds the data, so each test starts from the
    documented preconditions whatever an earlier run left in the directory.
    """
    options = SandboxOptions(
        directory=Path(directory),
        scale=scale,
        faults=tuple(faults),
        ports={**dict.fromkeys(SERVERS, 0), **(ports or {})},
        reset=reset,
    )
    sandbox = Sandbox(options)
    try:
        yield sandbox.start()
    finally:
        sandbox.stop()
