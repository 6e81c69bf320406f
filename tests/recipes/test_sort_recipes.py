"""The shipped SOrT recipes (``sort_paper``, ``sort_released``) parse into the SOrT flow's argument classes and
state what docs/sort.md's "setting | paper | released code | hf_vcr default" table says."""

from __future__ import annotations

import dataclasses

from hf_vcr.flows import load_recipe

from .doc_tables import check_recipes_against_table

PROSE = {"sort_paper": {}, "sort_released": {}}


def test_recipes_state_the_doc_tables_values():
    check_recipes_against_table("sort", PROSE)


def test_recipes_differ_only_in_the_loss():
    common = ["--output_dir", "/tmp/hf_vcr_recipe_check", "--use_cpu", "true"]
    paper = [dataclasses.asdict(a) for a in load_recipe("sort", "sort_paper", common)]
    released = [dataclasses.asdict(a) for a in load_recipe("sort", "sort_released", common)]
    differ = {k for p, r in zip(paper, released) for k in p if p[k] != r[k]}
    loss = {"sort_mode", "lambda_reasoning", "lambda_sub", "lambda_irrelevant", "contrastive_weight",
            "contrastive_weight_per_answer"}
    assert loss <= differ and differ - loss <= {"output_dir", "logging_dir", "run_name"}
