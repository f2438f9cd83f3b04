"""The broken-runbook corpus: each file in broken/ has exactly one mistake, and
the .expected file beside it holds the exact line the loader must report.

A new check is a new pair of files. The corpus runs against the contract's
step types (always) and against the real step library (once it registers
every contract type).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.errors import RunbookError
from cutover.load import load_runbook
from cutover.profile import Profile
from cutover.steps import Registry

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(BROKEN.glob("*.yaml"))


def _report(
    case: Path, registry: Registry, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> str:
    # Messages name the file as it was given; from inside broken/ that is "NN-name.yaml".
    monkeypatch.chdir(BROKEN)
    with pytest.raises(RunbookError) as info:
        load_runbook(Path(case.name), profile, registry)
    return str(info.value)


def _expected(case: Path) -> str:
    return case.with_suffix(".expected").read_text(encoding="utf-8").rstrip("\n")


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_runbook(
    case: Path, contract_registry: Registry, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _report(case, contract_registry, profile, monkeypatch) == _expected(case)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_runbook_with_step_library(
    case: Path,
    real_registry: Registry,
    library_gaps: list[str],
    profile: Profile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A line listing every known type of a kind can only match once the library has them all.
    gaps = [gap for gap in library_gaps if f"known {gap.split()[0]} types" in _expected(case)]
    if gaps:
        pytest.skip(f"the expected line lists every step type; the library lacks {', '.join(gaps)}")
    assert _report(case, real_registry, profile, monkeypatch) == _expected(case)


def test_every_case_has_one_expected_line() -> None:
    assert len(CASES) >= 22
    for case in CASES:
        lines = _expected(case).splitlines()
        assert len(lines) == 1, f"{case.name}: a case holds exactly one mistake"
        assert lines[0].startswith(f"{case.name}:"), case.name
    orphans = {p.stem for p in BROKEN.glob("*.expected")} - {c.stem for c in CASES}
    assert not orphans


def test_the_seed_mistake_is_in_the_corpus() -> None:
    case = BROKEN / "07-november-31.yaml"
    assert "2023-11-31 24:00" in case.read_text(encoding="utf-8")
    assert _expected(case).endswith("2023-11-31 is not a date (November has 30 days)")
