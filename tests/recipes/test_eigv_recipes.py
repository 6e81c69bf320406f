"""The shipped EIGV recipes (``eigv_paper``, ``eigv_released``) parse into the EIGV flow's argument classes and state
what docs/eigv.md's "setting | paper | released code | hf_vcr default" table says."""

from __future__ import annotations

from .doc_tables import check_recipes_against_table, recipe_values

PROSE = {"eigv_paper": {}, "eigv_released": {}}


def test_recipes_state_the_doc_tables_values():
    check_recipes_against_table("eigv", PROSE)


def test_plateau_schedule_and_key_values():
    paper, released = recipe_values("eigv", "eigv_paper"), recipe_values("eigv", "eigv_released")
    for r in (paper, released):
        assert r["lr_scheduler_kwargs"] == {"factor": 0.5, "patience": 5} and r["dataset"] == "nextqa"
    assert (paper["eigv_beta"], released["eigv_beta"]) == (0.75, 0.0125)
    assert (paper["contrastive_normalize"], released["contrastive_normalize"]) == (False, True)
    assert paper["erm_warmup_steps"] == released["erm_warmup_steps"] == 0
