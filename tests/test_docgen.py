"""The config reference in docs/operations.md is generated from the models and kept current."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from support import REPO

from router.backends import BACKENDS
from router.conditions import Condition
from router.config import Duration, Size
from router.config import schema as cfg
from router.docgen import BEGIN, END, main, reference, replace_section, table
from router.filters import FILTERS

OPERATIONS = Path(REPO) / "docs" / "operations.md"


def test_the_committed_reference_is_the_generated_one():
    text = OPERATIONS.read_text(encoding="utf-8")

    assert replace_section(text, reference()) == text, (
        "run: python -m router.docgen --write docs/operations.md"
    )


def test_every_section_filter_and_backend_type_has_its_heading():
    generated = reference()

    for name in (*cfg.SECTIONS, "pipeline", "backends", "tests"):
        assert f"### `{name}:`" in generated
    for name in (*FILTERS, *BACKENDS):
        assert f"#### `type: {name}`" in generated


def all_models() -> list[type[BaseModel]]:
    from router.configtest.suite import CaseOptions, SuiteOptions
    from router.docgen import nested_models

    roots = [
        *cfg.SECTIONS.values(),
        cfg.BackendCommon,
        Condition,
        SuiteOptions,
        CaseOptions,
        *(getattr(c, "Options", None) for c in (*FILTERS.values(), *BACKENDS.values())),
    ]
    seen: dict[type[BaseModel], None] = {}
    todo = [m for m in roots if m is not None]
    while todo:
        model = todo.pop()
        if model not in seen:
            seen[model] = None
            todo += [
                sub for f in model.model_fields.values() for sub in nested_models(f.annotation)
            ]
    return list(seen)


@pytest.mark.parametrize("model", all_models(), ids=lambda m: m.__name__)
def test_every_config_key_says_what_it_is_for(model):
    undescribed = [name for name, f in model.model_fields.items() if not f.description]

    assert not undescribed, f"{model.__name__}: give Field(description=...) to {undescribed}"


class Example(BaseModel):
    """An example section."""

    wait: Duration = Field(7200.0, gt=0, description="how long | to wait")
    cap: Size = Field(2 * 1024 * 1024, description="how much")
    mode: str = Field(description="which one")


def test_a_row_shows_type_bounds_default_and_meaning_in_yaml_terms():
    rows = table(Example)

    assert rows[2] == "| `wait` | duration, > 0 | `2h` | how long \\| to wait |"
    assert rows[3] == "| `cap` | size | `2MiB` | how much |"
    assert rows[4] == "| `mode` | string | required | which one |"


def test_write_replaces_only_the_generated_section_and_check_finds_it_stale(tmp_path, capsys):
    doc = tmp_path / "ops.md"
    doc.write_text(f"# Ops\n\nhand-written\n\n{BEGIN}\nstale\n{END}\nafter\n")

    assert main(["--check", str(doc)]) == 1
    assert main(["--write", str(doc)]) == 0
    assert main(["--check", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Ops\n\nhand-written\n\n") and text.endswith(f"{END}\nafter\n")
    assert "stale" not in text and "## Configuration reference" in text
