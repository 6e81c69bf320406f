"""Reading a method doc's "setting | paper | released code | hf_vcr default" table, so the recipe tests check
the shipped yaml files and the config defaults against what the doc states (one source of truth for readers)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from hf_vcr.flows import flow_module, load_recipe

REPO = Path(__file__).resolve().parents[2]
HEADER = "| setting | paper | released code | hf_vcr default |"
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w])")
# a paper cell that gives no value of its own: the paper recipe then takes the released code's value
UNSPECIFIED = ("—", "Pythia's", ">", '"')


def recipe_table(method: str) -> dict[str, tuple[str, str, str]]:
    """``field -> (paper cell, released cell, hf_vcr default cell)`` for every backticked field of the first cell."""
    text = (REPO / "docs" / f"{method}.md").read_text()
    assert HEADER in text, f"docs/{method}.md has no '{HEADER}' table"
    rows: dict[str, tuple[str, str, str]] = {}
    for line in text[text.index(HEADER):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for name in re.findall(r"`([a-z0-9_]+)`", cells[0]):
            rows[name] = (cells[1], cells[2], cells[3])
    return rows


def _scalar(value):
    return getattr(value, "value", value)  # enums (lr_scheduler_type) by their value


def cell_states(cell: str, value) -> bool:
    """Whether a table cell states ``value``: a number among its numbers, a bool or word among its words."""
    value = _scalar(value)
    if isinstance(value, bool):
        return re.search(rf"\b{str(value).lower()}\b", cell) is not None
    if isinstance(value, (int, float)):
        return any(abs(float(n) - float(value)) <= 1e-12 * max(1.0, abs(float(value))) for n in NUMBER.findall(cell))
    return re.search(rf"(?<![\w-]){re.escape(str(value))}(?![\w-])", cell) is not None


def recipe_values(method: str, name: str) -> dict:
    values = {}
    for obj in load_recipe(method, name, ["--output_dir", "/tmp/hf_vcr_recipe_check", "--use_cpu", "true"]):
        values.update({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    return values


def config_defaults(method: str) -> dict:
    out = {}
    for cls in flow_module(method).ARGUMENTS:
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
    return out


def check_recipes_against_table(method: str, only_in_tests: dict[str, dict]) -> None:
    """Every field of the doc's table: the paper recipe states the paper cell's value (or, where the paper gives
    none, the released cell's), the released recipe the released cell's, and the config default the last cell's
    (where that default is a scalar). ``only_in_tests``: recipe name -> fields whose cells are prose, checked here."""
    table = recipe_table(method)
    paper, released = recipe_values(method, f"{method}_paper"), recipe_values(method, f"{method}_released")
    defaults = config_defaults(method)
    for field, (paper_cell, released_cell, default_cell) in table.items():
        assert field in paper and field in released, f"docs/{method}.md names {field!r}, which no argument class has"
        if field in only_in_tests[f"{method}_paper"] or isinstance(paper[field], dict):
            continue  # prose cells, and dicts (lr_scheduler_kwargs): checked by the method's own tests
        if not cell_states(paper_cell, paper[field]):
            assert paper_cell.startswith(UNSPECIFIED), (field, paper_cell, paper[field])
            assert cell_states(released_cell, paper[field]), (field, released_cell, paper[field])
        assert cell_states(released_cell, released[field]), (field, released_cell, released[field])
        default = _scalar(defaults.get(field))
        if isinstance(default, (bool, int, float, str)) and not default_cell.startswith("—"):
            assert cell_states(default_cell, default), (field, default_cell, default)
    for name, expected in only_in_tests.items():
        got = paper if name.endswith("_paper") else released
        for field, value in expected.items():
            assert field in table, f"{field!r} is checked for {name} but docs/{method}.md's table does not name it"
            assert _scalar(got[field]) == value, (name, field, got[field], value)
