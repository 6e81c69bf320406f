"""Every method's script pushes its final checkpoint(s) with the hf_vcr model card through
``--push_to_hub true --hub_model_id ID``: ARC (f_A, f_R, f_C), joint (f_A, f_R), SOrT, EIGV, the LSKD student and
the LSKD critic.  Each pushed model loads with ``AutoModel.from_pretrained`` from the local Hub and equals the local
checkpoint; its card carries method, paper, hyper-parameters, data, model-index results, how to load and how to train.
A failed push (EIGV here) raises HubPushError and leaves the local run as it was."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModel

import hf_vcr  # noqa: F401
from hf_vcr.hub import HubPushError

REPO = Path(__file__).resolve().parents[2]


def script_main(method: str, argv: list[str]):
    return importlib.import_module(f"hf_vcr.flows.{method}").main(argv)


def config(method: str) -> str:
    return str(REPO / "scripts" / "configs" / f"{method}_synthetic.yaml")


COMMON = ["--disable_tqdm", "true", "--save_strategy", "no", "--logging_steps", "1", "--max_steps", "2"]


def vcr_args(method, synthetic_vcr, out):
    extra = {"arc": ["--teacher_max_steps", "2", "--teacher_eval_steps", "2"], "joint": []}[method]
    return [config(method), "--annotations_dir", synthetic_vcr["annotations_dir"], "--images_dir", synthetic_vcr["images_dir"],
            "--output_dir", str(out), "--max_train_items", "32", "--max_eval_items", "16", "--per_device_train_batch_size", "8",
            *COMMON, *extra]


def tiny_args(method, out):
    return {
        "sort": [config("sort"), "--synthetic_train_items", "32", "--synthetic_eval_items", "8", "--per_device_train_batch_size", "8",
                 "--hidden_size", "32", "--question_hidden_size", "32", "--attention_hidden_size", "32", "--classifier_hidden_size", "64"],
        "eigv": [config("eigv"), "--synthetic_train", "32", "--synthetic_val", "16", "--per_device_train_batch_size", "8",
                 "--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32", "--memory_bank_size", "64"],
        "lskd": [config("lskd"), "--synthetic_images", "40", "--synthetic_mc", "8", "--per_device_train_batch_size", "8"],
        "critic": [config("critic"), "--synthetic_items", "40", "--per_device_train_batch_size", "8"],
    }[method] + ["--output_dir", str(out), *COMMON]


def assert_same_weights(repo_id: str, local_dir: Path):
    pushed = AutoModel.from_pretrained(repo_id)
    local = AutoModel.from_pretrained(local_dir)
    assert type(pushed) is type(local)
    a, b = pushed.state_dict(), local.state_dict()
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), f"{repo_id}: {name} differs from {local_dir}"


def assert_card(repo_id: str, method_tag: str, script: str, paper: str):
    card = ModelCard.load(repo_id)
    assert "hf_vcr" in card.data.tags and method_tag in card.data.tags, card.data.tags
    assert card.data.eval_results, f"{repo_id}: no model-index eval results"
    assert all(r.metric_value is not None for r in card.data.eval_results)
    for section in ("## Training data", "## Hyper-parameters", "## Results", "## How to load", "## How to train"):
        assert section in card.text, f"{repo_id}: card lacks {section}"
    assert "AutoModel.from_pretrained" in card.text
    assert f"python scripts/train_{script}.py" in card.text
    assert paper in card.text
    assert "learning_rate" in card.text


@pytest.mark.parametrize("method", ["arc", "joint"])
def test_vcr_coupling_scripts_push_every_sub_model(method, hub, synthetic_vcr, tmp_path):
    out = tmp_path / "out"
    repo = f"lab/{method}-tiny"
    script_main(method, vcr_args(method, synthetic_vcr, out) + ["--push_to_hub", "true", "--hub_model_id", repo])
    subs = ("f_A", "f_R", "f_C") if method == "arc" else ("f_A", "f_R")
    tag, paper = {"arc": ("arc", "Joint Answering and Explanation"), "joint": ("joint-q→ar-coupling", "Enforcing Reasoning")}[method]
    for name in subs:
        assert_same_weights(f"{repo}-{name.lower()}", out / name)
        assert_card(f"{repo}-{name.lower()}", tag, method, paper)
    # re-running the finished run (nothing left to train) still pushes, here to another repository
    script_main(method, vcr_args(method, synthetic_vcr, out) + ["--push_to_hub", "true", "--hub_model_id", repo + "-again"])
    assert_same_weights(f"{repo}-again-f_a", out / "f_A")


@pytest.mark.parametrize(
    "method, tag, paper",
    [
        ("sort", "sort", "SOrT-ing VQA Models"),
        ("eigv", "eigv", "Equivariant and Invariant Grounding"),
        ("lskd", "lskd", "Localized Symbolic Knowledge Distillation"),
        ("critic", "lskd-critic", "Localized Symbolic Knowledge Distillation"),
    ],
)
def test_method_script_pushes_final_model_with_card(method, tag, paper, hub, tmp_path):
    out = tmp_path / "out"
    repo = f"lab/{method}-tiny"
    script_main(method, tiny_args(method, out) + ["--push_to_hub", "true", "--hub_model_id", repo])
    assert_same_weights(repo, out / "final")
    assert_card(repo, tag, method, paper)
    assert f'AutoModel.from_pretrained("{repo}")' in ModelCard.load(repo).text  # the card loads from the Hub id


def test_failed_eigv_push_leaves_the_local_run(hub, hub_server, tmp_path):
    out = tmp_path / "out"
    argv = tiny_args("eigv", out) + ["--push_to_hub", "true", "--hub_model_id", "lab/eigv-fail"]
    hub_server.fail_next("commit", status=500)
    with pytest.raises(HubPushError, match=r"lab/eigv-fail.*commit.*HTTP 500") as info:
        script_main("eigv", argv)
    assert info.value.step.endswith("commit") and info.value.status_code == 500
    final = out / "final"
    assert (final / "README.md").is_file() and (final / "config.json").is_file()
    assert (out / "metrics.json").is_file()
    before = {p: p.read_bytes() for p in final.rglob("*") if p.is_file()}
    AutoModel.from_pretrained(final)
    # the push alone, retried later, succeeds and leaves the local checkpoint byte-identical
    from hf_vcr.hub import push_checkpoint

    push_checkpoint(final, "lab/eigv-fail")
    assert {p: p.read_bytes() for p in final.rglob("*") if p.is_file()} == before
    assert_same_weights("lab/eigv-fail", final)
