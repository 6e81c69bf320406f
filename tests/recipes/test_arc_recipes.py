"""The shipped ARC recipes (``arc_paper``, ``arc_released``) parse into ARC's argument classes and state what
docs/arc.md's "setting | paper | released code | hf_vcr default" table says, field by field."""

from __future__ import annotations

import pytest

from hf_vcr.flows import load_recipe

from .doc_tables import check_recipes_against_table, recipe_table

# fields whose table cells are prose: their recipe values, checked here
PROSE = {
    "arc_paper": {"lr_scheduler_type": "reduce_lr_on_plateau", "metric_for_best_model": "q2ar",
                  "text_encoder": "bert-base-uncased", "vision_backbone": "microsoft/resnet-50"},
    "arc_released": {"lr_scheduler_type": "reduce_lr_on_plateau", "metric_for_best_model": "q2ar",
                     "text_encoder": "bert-base-uncased", "vision_backbone": "microsoft/resnet-50"},
}


def test_recipes_state_the_doc_tables_values():
    check_recipes_against_table("arc", PROSE)


@pytest.mark.parametrize("name", ["arc_paper", "arc_released"])
def test_recipe_schedule_and_variant(name):
    model_args, data_args, args = load_recipe("arc", name, ["--output_dir", "/tmp/hf_vcr_recipe_check", "--use_cpu", "true"])
    assert args.lr_scheduler_kwargs == {"factor": 0.5, "patience": 1, "cooldown": 2, "mode": "max"}
    assert str(args.eval_strategy.value) == "epoch" and args.greater_is_better
    assert args.kd_r_variant == name.split("_")[1]
    assert data_args.annotations_dir and data_args.images_dir  # real-data recipes
    assert {"alpha", "beta", "kd_temperature", "kd_r_variant", "learning_rate"} <= set(recipe_table("arc"))
