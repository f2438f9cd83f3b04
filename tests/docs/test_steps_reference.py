"""docs/steps.md is generated from the parameter models; it must not drift from them."""

from __future__ import annotations

from pathlib import Path

from cutover.stepdocs import step_reference
from cutover.steps import load_step_types

DOC = Path(__file__).resolve().parents[2] / "docs" / "steps.md"


def test_docs_steps_md_is_up_to_date():
    generated = step_reference(load_step_types())
    assert DOC.read_text(encoding="utf-8") == generated, (
        "docs/steps.md is stale: run `cutover steps --markdown > docs/steps.md`")


def test_every_registered_step_type_and_parameter_is_documented():
    registry = load_step_types()
    text = DOC.read_text(encoding="utf-8")
    for step_type in registry.all():
        assert f"### `{step_type.name}`" in text
        for name, field in step_type.params.model_fields.items():
            assert f"| `{field.alias or name}` |" in text
            assert field.description, f"{step_type.name}.{name} has no description"
