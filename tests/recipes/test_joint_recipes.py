"""The shipped joint-coupling recipes (``joint_paper``, ``joint_released``) parse into the joint flow's argument
classes and state what docs/joint.md's "setting | paper | released code | hf_vcr default" table says."""

from __future__ import annotations

import pytest

from hf_vcr.flows import load_recipe

from .doc_tables import check_recipes_against_table

PROSE = {
    "joint_paper": {"lr_scheduler_type": "reduce_lr_on_plateau", "metric_for_best_model": "loss",
                    "text_encoder": "bert-base-uncased", "vision_backbone": "microsoft/resnet-50"},
    "joint_released": {"lr_scheduler_type": "reduce_lr_on_plateau", "metric_for_best_model": "q2ar",
                       "text_encoder": "bert-base-uncased", "vision_backbone": "microsoft/resnet-50"},
}


def test_recipes_state_the_doc_tables_values():
    check_recipes_against_table("joint", PROSE)


@pytest.mark.parametrize("name,mode", [("joint_paper", "min"), ("joint_released", "max")])
def test_recipe_plateau_follows_its_metric(name, mode):
    _, data_args, args = load_recipe("joint", name, ["--output_dir", "/tmp/hf_vcr_recipe_check", "--use_cpu", "true"])
    assert args.lr_scheduler_kwargs == {"factor": 0.5, "patience": 1, "cooldown": 2, "mode": mode}
    assert args.greater_is_better == (mode == "max")
    assert data_args.annotations_dir and data_args.images_dir


def test_released_direct16_weights_parse():
    # the released direct-16 objective, as the recipe's header says: 4/20 CE_A + 16/20 CE_16
    *_, args = load_recipe("joint", "joint_released", ["--output_dir", "/tmp/hf_vcr_recipe_check", "--use_cpu", "true",
                                                       "--coupling", "direct16", "--loss_ratio", "0.2:0.8"])
    assert args.loss_weights == (0.2, 0.8) and args.eval_answer_feed == "mixture"
