"""The VCR script pushes each task's checkpoint with its hf_vcr card through push_to_hub/hub_model_id;
the VCR views push as one dataset config per task; a failed push leaves the local run intact."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModel

import hf_vcr  # noqa: F401
from hf_vcr.data.vcr import hub_configs, load_vcr
from hf_vcr.hub import HubPushError, push_dataset

REPO = Path(__file__).resolve().parents[2]


def train_vcr_main(argv):
    from hf_vcr.flows.vcr import main

    return main(argv)


def args(synthetic_vcr, out, repo):
    return [str(REPO / "scripts/configs/vcr_synthetic.yaml"), "--annotations_dir", synthetic_vcr["annotations_dir"],
            "--images_dir", synthetic_vcr["images_dir"], "--output_dir", str(out), "--max_steps", "2",
            "--save_strategy", "no", "--disable_tqdm", "true", "--push_to_hub", "true", "--hub_model_id", repo]


def test_script_pushes_every_task_with_its_card(hub, synthetic_vcr, tmp_path):
    train_vcr_main(args(synthetic_vcr, tmp_path / "out", "lab/vcr-tiny"))
    for task in ("q2a", "qa2r"):
        pushed = AutoModel.from_pretrained(f"lab/vcr-tiny-{task}")
        local = AutoModel.from_pretrained(tmp_path / "out" / task)
        for (name, a), b in zip(pushed.state_dict().items(), local.state_dict().values()):
            assert torch.equal(a, b), name
        card = ModelCard.load(f"lab/vcr-tiny-{task}")
        assert "hf_vcr" in card.data.tags
        assert card.data.eval_results and card.data.eval_results[0].metric_type == "accuracy"
        assert "How to train" in card.text and "python scripts/train_vcr.py" in card.text


def test_failed_push_leaves_the_local_checkpoint(hub, hub_server, synthetic_vcr, tmp_path):
    hub_server.fail_next("commit", status=500)
    out = tmp_path / "out"
    with pytest.raises(HubPushError, match=r"lab/vcr-fail-q2a.*commit.*HTTP 500"):
        train_vcr_main(args(synthetic_vcr, out, "lab/vcr-fail"))
    before = {p: p.read_bytes() for p in (out / "q2a").rglob("*") if p.is_file()}
    assert (out / "q2a" / "training_complete").is_file() and (out / "q2a" / "README.md").is_file()
    AutoModel.from_pretrained(out / "q2a")
    # pushing again later works and changes nothing locally
    train_vcr_main(args(synthetic_vcr, out, "lab/vcr-fail"))
    assert {p: p.read_bytes() for p in (out / "q2a").rglob("*") if p.is_file()} == before
    AutoModel.from_pretrained("lab/vcr-fail-q2a")


def test_vcr_views_push_as_one_config_per_task(hub, real_vcr_dir, tmp_path):
    val = load_vcr("val", str(real_vcr_dir), cache_dir=str(tmp_path / "c"))
    configs = hub_configs(val)
    push_dataset(configs, "lab/vcr-views", pretty_name="VCR views", source="VCR 1.0 val sample")
    for view, local in configs.items():
        loaded = datasets.load_dataset("lab/vcr-views", view, split="train")
        assert loaded.to_list() == local.to_list()
    joint = datasets.load_dataset("lab/vcr-views", "joint", split="train")[0]
    assert len(joint["queries"]) == 16 and joint["label"] == 4 * 2 + 3
    assert joint["queries"][9].endswith("No , Casey is a visitor .")
