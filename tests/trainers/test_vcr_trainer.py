"""The foundation end to end: scripts/train_vcr.py learns on the embedded corpus, saves
loadable checkpoints with cards, evaluates Q→AR with predicted answers, and resumes; pretrained
parts (--text_encoder, --vision_backbone) alone and together; a ZeRO-2 rerun that reuses finished tasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, ConvNextImageProcessor, ViTImageProcessor

import hf_vcr  # noqa: F401
from hf_vcr.cli import main as cli_main
from hf_vcr.data.collator import VcrCollator
from hf_vcr.data.vcr import load_vcr, tokenize_view
from hf_vcr.trainers.vcr_components import build_collator, build_model
from hf_vcr.trainers.vcr_config import VcrModelArguments

from tests.conftest import small_vcr_corpus

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_vcr.py"
CONFIG = REPO / "scripts" / "configs" / "vcr_synthetic.yaml"


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_vcr", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vcr_run")
    out = root / "out"
    metrics = load_script().main([
        str(CONFIG), "--output_dir", str(out), "--synthetic_dir", str(root / "data"),
        "--synthetic_train", "600", "--synthetic_val", "100", "--num_train_epochs", "5",
        "--per_device_train_batch_size", "16", "--save_steps", "1000", "--logging_steps", "25", "--disable_tqdm", "true",
    ])
    return root, out, metrics


def test_learns_beyond_chance(trained):
    _, out, metrics = trained
    # chance: Q→A 25%, Q→AR 6.25%
    assert metrics["q2a"] > 50.0
    assert metrics["q2ar"] > 18.75
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["q2ar"] == pytest.approx(metrics["q2ar"])


def test_leaderboard_csv_scores_the_same_through_the_cli(trained, capsys):
    root, out, metrics = trained
    assert cli_main(["evaluate", "vcr", "--predictions", str(out / "val_predictions.csv"),
                     "--annotations", str(root / "data" / "val.jsonl")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("q2a", "qa2r", "q2ar"):
        assert printed[key] == pytest.approx(metrics[key], abs=0.01)


def test_checkpoint_reloads_with_auto_model_and_same_logits(trained):
    root, out, _ = trained
    model = AutoModel.from_pretrained(out / "q2a").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "q2a")
    val = load_vcr("val", str(root / "data"), str(root / "data" / "vcr1images"))
    view = tokenize_view(val.select(range(8)), tokenizer, "q2a", max_objects=model.config.max_objects)
    batch = VcrCollator.for_model(model.config, tokenizer.pad_token_id)([view[i] for i in range(8)])
    labels = batch.pop("labels")
    with torch.no_grad():
        a = model(**batch).logits
        b = AutoModel.from_pretrained(out / "q2a").eval()(**batch).logits
    assert torch.equal(a, b)
    assert (a.argmax(-1) == labels).float().mean() > 0.25
    card = (out / "q2a" / "README.md").read_text()
    assert "model-index" in card and "VcrForMultipleChoice" in card and "AutoModel.from_pretrained" in card


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, trained):
    root, _, _ = trained
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), str(CONFIG), "--output_dir", str(out), "--synthetic_dir", str(root / "data"),
           "--synthetic_train", "600", "--synthetic_val", "100", "--tasks", "q2a", "--max_steps", "60",
           "--save_steps", "10", "--logging_steps", "10", "--disable_tqdm", "true"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    marker = out / "q2a" / "checkpoint-20" / "checkpoint_complete"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), proc.stdout.read().decode()[-3000:] if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "q2a" / "training_complete").exists()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    resumed = [line for line in result.stdout.splitlines() if line.startswith("hf_vcr: resuming from")]
    assert resumed and "checkpoint-" in resumed[0]
    step = int(resumed[0].rsplit("checkpoint-", 1)[1])
    assert step >= 20
    state = json.loads((out / "q2a" / "checkpoint-60" / "trainer_state.json").read_text())
    assert state["global_step"] == 60
    assert (out / "q2a" / "training_complete").exists()


# ------------------------------------------------------------------ pretrained parts (--text_encoder, --vision_backbone)
# Tiny random ResNet / ViT / BERT saved to local directories stand in for Hub checkpoints.


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    _, _, val, tok = small_vcr_corpus(root / "corpus", n_train=4, n_val=4)
    torch.manual_seed(0)
    bert = AutoModel.from_config(AutoConfig.for_model("bert", vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    bert.save_pretrained(root / "bert")
    resnet = AutoModel.from_config(AutoConfig.for_model("resnet", embedding_size=8, hidden_sizes=[16, 24], depths=[1, 1],
                                                        layer_type="basic"))
    resnet.save_pretrained(root / "resnet")
    # its image processor says 48 px and its own statistics (a real one says shortest_edge 224)
    ConvNextImageProcessor(size={"shortest_edge": 48}, crop_pct=1.0, image_mean=[0.5, 0.4, 0.3],
                           image_std=[0.2, 0.2, 0.2]).save_pretrained(root / "resnet")
    vit = AutoModel.from_config(AutoConfig.for_model("vit", image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=48))
    vit.save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    vit_bare = root / "vit_no_processor"
    vit.save_pretrained(vit_bare)  # no image processor saved: the config's image_size is the default
    return root, val, tok, {"bert": bert, "resnet": resnet, "vit": vit}


def forward_on_corpus(model, tok, val):
    view = tokenize_view(val.select(range(2)), tok, "q2a", max_objects=model.config.max_objects)
    batch = build_collator(model, tok, VcrModelArguments())([view[0], view[1]])
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (2, 4) and torch.isfinite(out.logits).all()
    return batch


def assert_same_weights(module, reference):
    for (name, p), q in zip(module.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("backbone", ["resnet", "vit"])
def test_vision_backbone_alone_loads_its_weights_and_image_size(parts, backbone):
    root, val, tok, ref = parts
    model = build_model(VcrModelArguments(vision_backbone=str(root / backbone)), tok)
    assert_same_weights(model.vcr.vision_backbone, ref[backbone])
    assert model.config.text_config.hidden_size == 64  # the tiny text encoder, over the corpus tokenizer
    assert model.config.text_config.vocab_size == len(tok)
    side = 48 if backbone == "resnet" else 32
    assert model.config.image_size == [side, side]
    if backbone == "resnet":
        assert model.config.image_mean == pytest.approx([0.5, 0.4, 0.3])
    batch = forward_on_corpus(model, tok, val)
    assert batch["pixel_values"].shape[-2:] == (side, side)


def test_vit_without_image_processor_uses_its_config_size_and_other_sizes_interpolate(parts):
    root, val, tok, _ = parts
    model = build_model(VcrModelArguments(vision_backbone=str(root / "vit_no_processor")), tok)
    assert model.config.image_size == [32, 32]
    forward_on_corpus(model, tok, val)
    model = build_model(VcrModelArguments(vision_backbone=str(root / "vit"), image_size=48), tok)
    assert model.config.image_size == [48, 48]  # --image_size wins
    forward_on_corpus(model, tok, val)


def test_text_encoder_alone_and_both_together(parts):
    root, val, tok, ref = parts
    alone = build_model(VcrModelArguments(text_encoder=str(root / "bert")), tok)
    assert_same_weights(alone.vcr.text_encoder, ref["bert"])
    assert alone.config.image_size == [64, 64]  # no pretrained backbone: the tiny one at 64 px
    forward_on_corpus(alone, tok, val)
    both = build_model(VcrModelArguments(text_encoder=str(root / "bert"), vision_backbone=str(root / "resnet")), tok)
    assert_same_weights(both.vcr.text_encoder, ref["bert"])
    assert_same_weights(both.vcr.vision_backbone, ref["resnet"])
    assert both.config.image_size == [48, 48]
    forward_on_corpus(both, tok, val)


def test_text_only_model_has_no_vision_part(parts):
    root, val, tok, _ = parts
    model = build_model(VcrModelArguments(text_encoder=str(root / "bert"), visual_source="none"), tok)
    assert model.config.vision_config is None
    forward_on_corpus(model, tok, val)


def test_a_backbone_that_does_not_fit_is_a_clear_error(parts, tmp_path):
    root, _, tok, _ = parts
    from hf_vcr.models import VcrConfig, VcrForMultipleChoice

    model = VcrForMultipleChoice(VcrConfig.tiny(vocab_size=len(tok)))
    with pytest.raises(ValueError, match="resnet: weights do not fit this model's vision backbone"):
        model.load_vision_backbone(str(root / "resnet"))


# ------------------------------------------------------------------ DeepSpeed ZeRO-2: a rerun reuses finished tasks
def test_zero2_rerun_reusing_finished_tasks_evaluates(tmp_path):
    """The rerun loads the finished Q→A / QA→R models (no DeepSpeed engine) and must still evaluate Q→AR: below
    ZeRO-3, Trainer.predict would ask DeepSpeed for a ZeRO inference engine, which it refuses."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", DS_ACCELERATOR="cpu",
               OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    args = ["vcr_synthetic", "--output_dir", "run", "--synthetic_dir", "data", "--synthetic_train", "32", "--synthetic_val", "8",
            "--max_steps", "2", "--save_strategy", "no", "--disable_tqdm", "true", "--deepspeed", "zero2"]
    lines = []
    for attempt in range(2):
        from tests.distributed.launch import free_port

        if attempt:  # as if killed after both tasks finished but before the run was marked complete: tasks reused
            (tmp_path / "run" / "run_complete.json").unlink()

        env["MASTER_PORT"] = str(free_port())
        result = subprocess.run([sys.executable, "-m", "hf_vcr.flows.vcr", *args], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        lines.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert lines[0] == lines[1] and {"q2a", "qa2r", "q2ar"} <= set(lines[1])
