"""EIGV trainer: the bounded memory bank, per-anchor negatives, one batched backbone forward, and a short run."""

import os

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from hf_vcr.data.synthetic_videoqa import load_causal_clips, make_synthetic_videoqa
from hf_vcr.data.tokenization import build_word_tokenizer
from hf_vcr.data.videoqa import ClipFeatureStore, VideoQaCollator, load_nextqa
from hf_vcr.models import VideoQaConfig, VideoQaForMultipleChoice
from hf_vcr.models.configuration_videoqa import TINY_TEXT_CONFIG
from hf_vcr.trainers.eigv_config import EigvConfig
from hf_vcr.trainers.eigv_trainer import ClipMemoryBank, EigvTrainer, eigv_views_step

torch.set_num_threads(1)


def test_memory_bank_is_bounded_ring_buffer():
    bank = ClipMemoryBank(capacity=10)
    for step in range(5):
        clips = torch.full((2, 3, 4), float(step))
        bank.push(clips, torch.tensor([2 * step, 2 * step + 1]), torch.zeros(2, 3, dtype=torch.bool))
        assert bank.size == min(10, 6 * (step + 1))
        assert bank.features.shape == (10, 4)  # never grows
    # the 10 newest clips survive: the last 4 of step 3 and all 6 of step 4
    assert sorted(bank.features[:, 0].tolist()) == [3.0] * 4 + [4.0] * 6
    big = torch.arange(30 * 4, dtype=torch.float32).reshape(5, 6, 4)
    bank.push(big, torch.arange(5), torch.ones(5, 6, dtype=torch.bool))
    assert bank.size == 10 and set(bank.video.tolist()) <= {3, 4}  # only the last 10 clips of a huge batch are kept


def test_memory_bank_sampling_excludes_videos_and_prefers_environment():
    torch.manual_seed(0)
    bank = ClipMemoryBank(capacity=100)
    clips = torch.arange(4 * 5, dtype=torch.float32).reshape(4, 5, 1).expand(4, 5, 3).clone()
    env = torch.zeros(4, 5, dtype=torch.bool)
    env[1, :2] = True  # only video 11 has environment clips (values 5, 6)
    bank.push(clips, torch.tensor([10, 11, 12, 13]), env)
    exclude = torch.tensor([[10, 12], [11, 13], [10, 11]])
    out = bank.sample(exclude, num_views=50, num_clips=5)
    assert out.shape == (3, 50, 5, 3)
    owners = (out[..., 0] // 5).long() + 10  # which video each drawn clip came from
    for b in range(3):
        assert not np.isin(owners[b].numpy(), exclude[b].numpy()).any()
    env_out = bank.sample(exclude, 20, 5, environment_only=True)
    assert set(env_out[0, ..., 0].unique().tolist()) == {5.0, 6.0}  # anchor 0 may use video 11's environment
    assert (env_out[1, ..., 0] // 5 + 10 != 11).all() and (env_out[1, ..., 0] // 5 + 10 != 13).all()  # falls back
    none_left = bank.sample(torch.tensor([[10, 11, 12, 13]]), 2, 5)
    assert torch.equal(none_left, torch.zeros_like(none_left))  # no admissible clip: zero vectors
    with pytest.raises(RuntimeError, match="empty"):
        ClipMemoryBank(3).sample(exclude, 1, 1)


def test_fallback_video_ids_never_repeat(tmp_path):
    """Without video_index every row gets a video id never used before (issue 13): ids repeating every batch made the
    bank exclude the clips of earlier rows at the same batch position instead of nothing but the row's own."""
    bank = ClipMemoryBank(capacity=10_000)
    a, b = bank.anonymous_video_ids(4), bank.anonymous_video_ids(4)
    assert len(set(a.tolist()) | set(b.tolist())) == 8 and (torch.cat([a, b]) < -1).all()
    model = _tiny_model()
    g = torch.Generator().manual_seed(1)
    args = EigvConfig(output_dir=str(tmp_path), num_video_negatives=1, num_question_negatives=1, use_cpu=True, report_to="none")
    bank = ClipMemoryBank(10_000)
    for _ in range(3):
        inputs = {"clip_features": torch.randn(4, 8, 64, generator=g), "input_ids": torch.randint(5, 100, (4, 5, 7), generator=g),
                  "attention_mask": torch.ones(4, 5, 7, dtype=torch.long), "labels": torch.tensor([0, 1, 2, 3])}
        eigv_views_step(model, inputs, args, bank)
    ids = bank.video[: bank.size].reshape(3 * 4, 8)[:, 0]  # one id per pushed row
    assert len(set(ids.tolist())) == 12 and bank.anonymous_issued == 12


def _tiny_model():
    torch.manual_seed(0)
    text = dict(TINY_TEXT_CONFIG, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return VideoQaForMultipleChoice(VideoQaConfig.tiny(text_config=text)).train()


def test_one_batched_forward_and_negatives_belong_to_their_anchor(tmp_path):
    model = _tiny_model()
    b, k, n_vid, n_q = 6, 8, 3, 2
    g = torch.Generator().manual_seed(0)
    inputs = {
        "clip_features": torch.randn(b, k, 64, generator=g),
        "input_ids": torch.randint(5, 100, (b, 5, 7), generator=g),
        "attention_mask": torch.ones(b, 5, 7, dtype=torch.long),
        "labels": torch.tensor([0, 1, 2, 3, 4, 0]),
        "video_index": torch.arange(b) + 100,
    }
    args = EigvConfig(output_dir=str(tmp_path), num_video_negatives=n_vid, num_question_negatives=n_q, use_cpu=True, report_to="none")
    calls, grounds, encs = [], [], []
    real_answer, real_ground, real_encode = model.answer, model.ground, model.encode

    def answer(v, q, m):
        calls.append((v, q, m))
        return real_answer(v, q, m)

    def ground(v, q, stochastic=None):
        out = real_ground(v, q, stochastic)
        grounds.append((v, out[0]))
        return out

    def encode(*a, **kw):
        out = real_encode(*a, **kw)
        encs.append(out)
        return out

    model.answer, model.ground, model.encode = answer, ground, encode
    bank = ClipMemoryBank(1000)
    out = eigv_views_step(model, inputs, args, bank)
    n_views = 2 + n_vid + n_q
    assert len(calls) == 1  # anchors, positives and all negatives in ONE backbone forward
    v_all, q_all, _ = calls[0]
    assert v_all.shape[0] == b * n_views
    v_all = v_all.reshape(b, n_views, k, -1)
    q_all = q_all.reshape(b, n_views, 5, 7, -1)
    q_tokens = encs[0]["q_tokens"]
    v_star, ind_star = grounds[1]
    causal = ind_star[..., 0].bool()
    for i in range(b):
        assert torch.allclose(v_all[i, 0], v_star[i])  # the anchor is v*
        env_i = ~causal[i]
        assert torch.allclose(v_all[i, 1][causal[i]], v_star[i][causal[i]])  # positive keeps the causal scene
        for n in range(2, 2 + n_vid):
            assert torch.allclose(v_all[i, n][env_i], v_star[i][env_i])  # video negatives keep the anchor's environment
        for n in range(2 + n_vid, n_views):
            assert torch.allclose(v_all[i, n], v_star[i])
            # the swapped question is another sample's, never the anchor's own
            matches = [j for j in range(b) if torch.allclose(q_all[i, n], q_tokens[j])]
            assert matches and i not in matches
    assert bank.size == b * k and torch.isfinite(out["loss"]) and out["logits"].shape == (b, 5)
    out["loss"].backward()
    assert model.videoqa.grounding.fc1.weight.grad is not None and model.videoqa.grounding.fc1.weight.grad.abs().sum() > 0


def test_eigv_trainer_runs_and_predicts_masks(tmp_path):
    data = str(tmp_path / "data")
    make_synthetic_videoqa(data, seed=1, num_train=48, num_val=16, num_clips=8, span=2, feature_dim=16)
    train_store = ClipFeatureStore.nextqa(os.path.join(data, "vid_feat", "app_mot_train.h5"))
    val_store = ClipFeatureStore.nextqa(os.path.join(data, "vid_feat", "app_mot_val.h5"))
    train = load_nextqa(os.path.join(data, "train.csv"), features=train_store, cache_dir=str(tmp_path / "cache"))
    val = load_nextqa(os.path.join(data, "val.csv"), features=val_store, cache_dir=str(tmp_path / "cache"))
    tok = build_word_tokenizer(list(train["question"]) + [o for opts in train["options"] for o in opts])
    torch.manual_seed(0)
    model = VideoQaForMultipleChoice(VideoQaConfig.tiny(visual_dim=16, num_clips=8, text_config=dict(TINY_TEXT_CONFIG, vocab_size=len(tok))))
    args = EigvConfig(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=8, per_device_eval_batch_size=16,
        logging_steps=2, save_strategy="no", report_to="none", use_cpu=True, learning_rate=1e-3, memory_bank_size=64,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = EigvTrainer(model=model, args=args, train_dataset=train, data_collator=VideoQaCollator(tok, train_store))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "erm_loss" in h]
    assert logs and all(np.isfinite(h["loss"]) and "contrastive_loss" in h and "causal_fraction" in h for h in logs)
    assert trainer.memory_bank.size == 64  # bounded: 4 batches of 8 x 8 clips pushed
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any("grounding" in n for n in changed) and any("fusion" in n for n in changed)
    trainer.data_collator = VideoQaCollator(tok, val_store)
    pred = trainer.predict(val)
    logits, _, mask, probs = pred.predictions
    assert logits.shape == (16, 5) and mask.shape == (16, 8) and set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(mask.astype(bool), probs > 0.5)
    truth = load_causal_clips(os.path.join(data, "causal_clips_val.json"))
    assert set(truth) == set(val["key"]) and all(len(v) == 2 for v in truth.values())


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="objective"):
        EigvConfig(output_dir=str(tmp_path), objective="mixup", report_to="none")
    with pytest.raises(ValueError, match="memory_bank_size"):
        EigvConfig(output_dir=str(tmp_path), memory_bank_size=0, report_to="none")
    assert EigvConfig(output_dir=str(tmp_path), report_to="none").eigv_beta == 0.75


def test_erm_warmup_steps_then_eigv(tmp_path):
    """``erm_warmup_steps``: plain cross entropy first (the grounding indicator is untouched), eq. 20 after."""
    data = str(tmp_path / "data")
    make_synthetic_videoqa(data, seed=2, num_train=32, num_val=4, num_clips=8, span=2, feature_dim=16)
    store = ClipFeatureStore.nextqa(os.path.join(data, "vid_feat", "app_mot_train.h5"))
    train = load_nextqa(os.path.join(data, "train.csv"), features=store, cache_dir=str(tmp_path / "cache"))
    tok = build_word_tokenizer(list(train["question"]) + [o for opts in train["options"] for o in opts])
    torch.manual_seed(0)
    model = VideoQaForMultipleChoice(VideoQaConfig.tiny(visual_dim=16, num_clips=8, text_config=dict(TINY_TEXT_CONFIG, vocab_size=len(tok))))
    args = EigvConfig(
        output_dir=str(tmp_path / "out"), max_steps=4, erm_warmup_steps=2, per_device_train_batch_size=8, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, learning_rate=1e-2, memory_bank_size=1024,
    )
    grounding = {n: p.detach().clone() for n, p in model.named_parameters() if ".grounding." in n}
    trainer = EigvTrainer(model=model, args=args, train_dataset=train, data_collator=VideoQaCollator(tok, store))

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                self.after_warmup = {n: p.detach().clone() for n, p in model.named_parameters() if ".grounding." in n}

    snap = Snapshot()
    trainer.add_callback(snap)
    trainer.train()
    logs = {h["step"]: h for h in trainer.state.log_history if "loss" in h}
    assert all("contrastive_loss" not in logs[s] for s in (1, 2)) and all("contrastive_loss" in logs[s] for s in (3, 4))
    assert all(torch.equal(snap.after_warmup[n], grounding[n]) for n in grounding)  # ERM never touches the indicator
    assert any(not torch.equal(p, grounding[n]) for n, p in model.named_parameters() if ".grounding." in n)
    assert trainer.memory_bank.size == 2 * 8 * 8  # filled only by the two EIGV steps
