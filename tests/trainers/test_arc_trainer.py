"""ARC trainer: the cached teacher gives the live teacher's loss, Algorithm 1 resumes in the right
stage, stage 1 stops early, outputs load with from_pretrained; VcrForMultipleChoice and VisualBERT."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, TrainerCallback, VisualBertForMultipleChoice

import hf_vcr  # noqa: F401
from hf_vcr.data.collator import VcrCollator
from hf_vcr.data.vcr import tokenize_view
from hf_vcr.models.adapters import VisualBertForVcr
from hf_vcr.trainers.arc_config import ArcConfig
from hf_vcr.trainers.arc_trainer import (
    ArcModel,
    ArcTrainer,
    cache_columns,
    compute_teacher_outputs,
    load_teacher_cache,
    run_arc,
    save_teacher_cache,
)
from hf_vcr.trainers.coupling_data import MultiViewCollator, build_scorer, merge_views
from hf_vcr.trainers.vcr_config import VcrModelArguments

from tests.conftest import small_vcr_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    _, train, val, tokenizer = small_vcr_corpus(tmp_path_factory.mktemp("arc_corpus"), n_train=24, n_val=8)
    return train, val, tokenizer


def builder(backbone, tokenizer):
    return lambda: build_scorer(backbone, VcrModelArguments(), tokenizer)


def arc_args(out, **kw):
    base = dict(
        output_dir=str(out), max_steps=4, teacher_max_steps=3, teacher_eval_steps=1, per_device_train_batch_size=8,
        per_device_eval_batch_size=16, learning_rate=1e-3, save_strategy="steps", save_steps=2, logging_steps=1,
        report_to="none", use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True,
    )
    base.update(kw)
    return ArcConfig(**base)


class Crash(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError(f"simulated kill at step {self.at}")


class FirstStep(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


@pytest.mark.parametrize("backbone,kd_r_variant", [("vcr", "paper"), ("vcr", "released"), ("visualbert", "paper")])
def test_cached_teacher_gives_the_live_teachers_stage2_loss(corpus, tmp_path, backbone, kd_r_variant):
    train, _, tok = corpus
    build = builder(backbone, tok)
    torch.manual_seed(0)
    teacher = build()
    base = VcrCollator.for_model(teacher.config, pad_token_id=tok.pad_token_id)
    kw = dict(max_length=64, max_objects=teacher.config.max_objects)
    views = {n: tokenize_view(train, tok, n, **kw) for n in ("q2a", "qa2r", "qr2a")}
    # the cache: computed once with its own batching (batch size 5: different padding than the step's)
    ids, logits, feats = compute_teacher_outputs(teacher, views["qr2a"], base, batch_size=5)
    # f_C's features of all four answers are kept (the released KD-R's answer direction scores them all)
    assert feats.shape == (len(ids), 4, teacher.config.hidden_size) and logits.shape == (len(ids), 4)
    save_teacher_cache(str(tmp_path / "cache"), ids, logits, feats)
    cache = load_teacher_cache(str(tmp_path / "cache"))
    cached_ds = merge_views({"a": views["q2a"], "r": views["qa2r"]}, extra=cache_columns(cache, ids, "cache"))
    live_ds = merge_views({"a": views["q2a"], "r": views["qa2r"], "c": views["qr2a"]})
    torch.manual_seed(1)
    released = kd_r_variant == "released"
    model = ArcModel(build(), build(), projection_dim=16 if released else None, teacher_dim=teacher.config.hidden_size)
    args = arc_args(tmp_path / "out", alpha=0.3, beta=0.4, kd_temperature=3.0, kd_r_variant=kd_r_variant)
    cached = ArcTrainer(model=model, args=args, data_collator=MultiViewCollator(base, ("a", "r"), ("teacher_logits", "teacher_feature")))
    live = ArcTrainer(model=model, args=args, teacher_model=teacher, data_collator=MultiViewCollator(base, ("a", "r", "c")))
    rows = [3, 0, 7, 12, 5, 9, 20, 21]
    batch_cached = cached.data_collator([cached_ds[i] for i in rows])
    batch_live = live.data_collator([live_ds[i] for i in rows])
    assert "teacher_logits" in batch_cached and "c_input_ids" in batch_live and "teacher_logits" not in batch_live
    for training in (False, True):
        model.train(training)
        torch.manual_seed(2)
        loss_cached = cached.compute_loss(model, dict(batch_cached))
        torch.manual_seed(2)
        loss_live = live.compute_loss(model, dict(batch_live))
        assert abs(loss_cached.item() - loss_live.item()) < 1e-6, (training, loss_cached.item(), loss_live.item())
    # each component was recorded
    assert {"ce_a", "ce_r", "kd_a", "kd_r"} <= set(cached._component_logs["train"])
    if released:
        assert {"kd_r_answer", "kd_r_rationale"} <= set(cached._component_logs["train"])


def test_stale_one_feature_cache_is_a_clear_error(tmp_path):
    save_teacher_cache(str(tmp_path / "cache"), ["a-1", "a-2"], torch.zeros(2, 4), torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"cache\.safetensors.*\[N, 4, H\].*delete"):
        load_teacher_cache(str(tmp_path / "cache"))


def test_missing_cache_entry_is_a_clear_error(tmp_path):
    cache = {"a-1": ([0.0] * 4, [[0.0] * 3] * 4)}
    with pytest.raises(KeyError, match="no entry for annot_id 'a-2'"):
        cache_columns(cache, ["a-1", "a-2"], "somewhere/annot_ids.json")


def test_algorithm1_resumes_in_the_right_stage(corpus, tmp_path):
    train, val, tok = corpus
    build = builder("vcr", tok)
    out = tmp_path / "arc"
    # killed in stage 1 after its checkpoint-1
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_arc(arc_args(out), train, val, tok, build, callbacks={"stage1": [Crash(2)]})
    assert (out / "stage1" / "checkpoint-1").is_dir() and not (out / "f_C" / "training_complete").exists()
    # resumed: stage 1 continues from step 2, finishes; killed in stage 2 after checkpoint-2
    s1 = FirstStep()
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_arc(arc_args(out), train, val, tok, build, callbacks={"stage1": [s1], "stage2": [Crash(3)]})
    assert s1.steps[0] == 2
    assert (out / "f_C" / "training_complete").exists()
    cache_file = out / "teacher_cache" / "cache.safetensors"
    assert cache_file.exists() and (out / "stage2" / "checkpoint-2").is_dir()
    teacher_mtime, cache_mtime = (out / "f_C" / "model.safetensors").stat().st_mtime_ns, cache_file.stat().st_mtime_ns
    # resumed again: stage 1 is not retrained, the cache is not recomputed, stage 2 continues from step 3
    s1, s2 = FirstStep(), FirstStep()
    metrics = run_arc(arc_args(out), train, val, tok, build, callbacks={"stage1": [s1], "stage2": [s2]})
    assert s1.steps == [] and s2.steps[0] == 3 and s2.steps[-1] == 4
    assert (out / "f_C" / "model.safetensors").stat().st_mtime_ns == teacher_mtime
    assert cache_file.stat().st_mtime_ns == cache_mtime
    assert {"q2a", "qa2r", "q2ar", "qr2a"} <= set(metrics)
    for name in ("f_A", "f_R", "f_C"):
        model = AutoModel.from_pretrained(out / name)
        assert type(model).__name__ == "VcrForMultipleChoice"
        assert (out / name / "README.md").exists()
    card = (out / "README.md").read_text()
    assert "ARC" in card and "q2ar" in card
    # every loss component was logged separately
    state = json.loads((out / "stage2" / "checkpoint-4" / "trainer_state.json").read_text())
    logged = set().union(*(set(h) for h in state["log_history"]))
    assert {"ce_a", "ce_r", "kd_a", "kd_r"} <= logged
    # a finished run returns its metrics without training
    assert run_arc(arc_args(out), train, val, tok, build)["q2ar"] == pytest.approx(metrics["q2ar"])


def test_visualbert_backbone_with_early_stopping_and_released_kd_r(corpus, tmp_path):
    train, val, tok = corpus
    out = tmp_path / "arc_vb"
    # teacher learning rate 0: the validation loss never improves, so patience 1 stops stage 1 at its 2nd evaluation
    args = arc_args(out, backbone="visualbert", teacher_learning_rate=0.0, teacher_max_steps=20, teacher_patience=1,
                    max_steps=2, kd_r_variant="released", teacher_mode="live")
    metrics = run_arc(args, train, val, tok, builder("visualbert", tok))
    stage1 = json.loads((out / "f_C" / "training_complete").read_text())
    assert stage1["steps"] == 2
    assert not (out / "teacher_cache").exists()  # live teacher: nothing cached
    for name in ("f_A", "f_R", "f_C"):
        assert isinstance(VisualBertForVcr.from_pretrained(out / name), VisualBertForVcr)
    # the checkpoints are plain VisualBERT multiple-choice checkpoints too
    VisualBertForMultipleChoice.from_pretrained(out / "f_A")
    assert 0.0 <= metrics["q2ar"] <= 100.0 and metrics["qr2a"] is not None


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="kd_r_variant"):
        ArcConfig(output_dir=str(tmp_path), kd_r_variant="clip", use_cpu=True)
    with pytest.raises(ValueError, match="teacher_mode"):
        ArcConfig(output_dir=str(tmp_path), teacher_mode="online", use_cpu=True)
    with pytest.raises(ValueError, match="alpha and beta"):
        ArcConfig(output_dir=str(tmp_path), alpha=1.5, use_cpu=True)
