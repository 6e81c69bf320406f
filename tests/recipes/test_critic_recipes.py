"""The shipped LSKD critic recipes (``critic_paper``, ``critic_released``) parse into the critic flow's argument
classes and state what the critic table of docs/lskd.md (under "### The critic: paper, released code and hf_vcr")
says."""

from __future__ import annotations

from . import doc_tables
from .doc_tables import HEADER, REPO, check_recipes_against_table, recipe_values

SECTION = "### The critic: paper, released code and hf_vcr"
PROSE = {"critic_paper": {}, "critic_released": {}}


def _critic_table(method: str) -> dict[str, tuple[str, str, str]]:
    text = (REPO / "docs" / "lskd.md").read_text()
    assert SECTION in text, f"docs/lskd.md has no '{SECTION}' section"
    part = text[text.index(SECTION):]
    assert HEADER in part
    rows = {}
    for line in part[part.index(HEADER):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for name in doc_tables.re.findall(r"`([a-z0-9_]+)`", cells[0]):
            rows[name] = (cells[1], cells[2], cells[3])
    return rows


def test_recipes_state_the_doc_tables_values(monkeypatch):
    monkeypatch.setattr(doc_tables, "recipe_table", _critic_table)  # the critic's table lives in docs/lskd.md
    assert "critic_head" in _critic_table("critic")
    check_recipes_against_table("critic", PROSE)


def test_released_critic_values():
    paper, released = recipe_values("critic", "critic_paper"), recipe_values("critic", "critic_released")
    assert (paper["freeze_vision"], released["freeze_vision"]) == (False, True)
    for r in (paper, released):
        assert (r["ce_weight"], r["qa_mse_weight"], r["rationale_mse_weight"]) == (1.0, 0.5, 0.5)
        assert r["critic_head"] == "released" and r["max_length"] == 128
