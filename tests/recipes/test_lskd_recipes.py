"""The shipped LSKD student recipes (``lskd_paper``, ``lskd_released``) parse into the LSKD flow's argument classes
and state what the first "setting | paper | released code | hf_vcr default" table of docs/lskd.md says."""

from __future__ import annotations

from .doc_tables import check_recipes_against_table, recipe_values

PROSE = {"lskd_paper": {}, "lskd_released": {}}


def test_recipes_state_the_doc_tables_values():
    check_recipes_against_table("lskd", PROSE)


def test_released_data_pipeline_in_both_recipes():
    for name in ("lskd_paper", "lskd_released"):
        r = recipe_values("lskd", name)
        assert r["max_length"] == 128 and r["augment_regions"] and r["region_strategy"] == "released"
        assert r["rationale_probability"] == 0.5 and r["itc_gather_with_grad"] is False and r["objective"] == "stage1"
    assert recipe_values("lskd", "lskd_released")["lr_scheduler_kwargs"] == {"min_lr": 1e-6}
