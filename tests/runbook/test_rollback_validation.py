"""A runbook's rollback runbooks are validated with it: their mistakes surface at review."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cutover.errors import RunbookError
from cutover.load import load_with_rollbacks

HERE = Path(__file__).parent


def test_good_runbook_and_its_rollback_load_together(profile, real_registry):
    runbook = load_with_rollbacks(HERE / "good.yaml", profile, real_registry)
    assert runbook.rollback == "rollback.yaml"


def test_a_mistake_in_the_rollback_runbook_is_reported_at_its_own_line(
    tmp_path, profile, real_registry
):
    shutil.copy(HERE / "good.yaml", tmp_path / "good.yaml")
    broken = (HERE / "rollback.yaml").read_text().replace("state: running", "state: up")
    (tmp_path / "rollback.yaml").write_text(broken)
    with pytest.raises(RunbookError) as caught:
        load_with_rollbacks(tmp_path / "good.yaml", profile, real_registry)
    [problem] = caught.value.problems
    assert problem.file.endswith("rollback.yaml") and problem.line == 18
    assert "'up'" in problem.message
