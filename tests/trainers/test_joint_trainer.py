"""Joint Q→AR coupling trainer: eq. 1's answer slot, the couplings' gradients, deterministic evaluation
with the predicted answer, the Gumbel τ schedule, RL sampling per item, direct-16 alignment; with
VcrForMultipleChoice and with VisualBERT through the adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

import hf_vcr  # noqa: F401
from hf_vcr.data.vcr import tokenize_view
from hf_vcr.data.collator import VcrCollator
from hf_vcr.models.adapters import VisualBertForVcr
from hf_vcr.models.joint_coupling import AnswerConditionedRationaleScorer, all_answers_weights
from hf_vcr.trainers.coupling_data import build_scorer, merge_views
from hf_vcr.trainers.joint_config import JointConfig
from hf_vcr.trainers.joint_trainer import (
    JointCouplingModel,
    JointTrainer,
    build_joint_datasets,
    joint_metrics,
    make_joint_collator,
    run_joint,
)
from hf_vcr.trainers.vcr_config import VcrModelArguments

from tests.conftest import small_vcr_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    _, train, val, tok = small_vcr_corpus(tmp_path_factory.mktemp("joint_corpus"), n_train=16, n_val=8)
    train_ds, val_ds = build_joint_datasets(train, val, tok, max_length=64, reference_style="r2c", max_objects=8)
    return train, val, tok, train_ds, val_ds


def builder(backbone, tok):
    return lambda: build_scorer(backbone, VcrModelArguments(), tok)


def joint_args(out, **kw):
    base = dict(output_dir=str(out), max_steps=2, per_device_train_batch_size=4, per_device_eval_batch_size=8,
                learning_rate=1e-3, save_strategy="no", logging_steps=1, report_to="none", use_cpu=True, seed=0,
                dataloader_num_workers=0, disable_tqdm=True, rl_num_samples=16)
    base.update(kw)
    return JointConfig(**base)


def make_trainer(corpus, tmp_path, backbone="vcr", **kw):
    _, _, tok, train_ds, val_ds = corpus
    torch.manual_seed(0)
    build = builder(backbone, tok)
    model = JointCouplingModel(build(), build())
    return JointTrainer(model=model, args=joint_args(tmp_path, **kw), train_dataset=train_ds, eval_dataset=val_ds,
                        data_collator=make_joint_collator(model.answer_model.config, tok), compute_metrics=joint_metrics)


@pytest.mark.parametrize("backbone", ["vcr", "visualbert"])
def test_one_hot_answer_slot_is_the_question_followed_by_that_answer(corpus, backbone):
    # eq. 1 with a one-hot weight must reproduce the rationale scores of the real (question + answer i) text
    train, _, tok, train_ds, _ = corpus
    torch.manual_seed(0)
    model = builder(backbone, tok)().eval()
    collator = make_joint_collator(model.config, tok)
    rows = [train_ds[i] for i in range(4)]
    batch = collator(rows)
    with torch.no_grad():
        slot_logits, _ = AnswerConditionedRationaleScorer()(model, batch, all_answers_weights(4))  # [B, 4, 4]
        joint = tokenize_view(train.select(range(4)), tok, "joint", max_length=64, max_objects=8)
        plain = VcrCollator.for_model(model.config, pad_token_id=tok.pad_token_id)([joint[i] for i in range(4)])
        plain.pop("labels")
        ref = model(**plain)["logits"].view(4, 4, 4)  # the 16 real (q + a_i, r_j) pairs
    assert torch.allclose(slot_logits, ref, atol=1e-4), (slot_logits - ref).abs().max()


@pytest.mark.parametrize("coupling,reaches_answer_model", [("softmax", True), ("gumbel", True), ("rl", True),
                                                            ("direct16", False), ("baseline75", False)])
def test_rationale_loss_gradient_reaches_the_answer_model_only_when_coupled(corpus, tmp_path, coupling, reaches_answer_model):
    # loss ratio 0:1 leaves only the QA→R term; its gradient reaches f_A through the weights/samples (not for the baseline)
    trainer = make_trainer(corpus, tmp_path, coupling=coupling, loss_ratio="0:1")
    model = trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    # direct16's 16-way term scores pairs with f_R alone (paper, released code): f_A learns from CE_A only
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    g_answer = sum(p.grad.abs().sum().item() for p in model.answer_model.parameters() if p.grad is not None)
    g_rationale = sum(p.grad.abs().sum().item() for p in model.rationale_model.parameters() if p.grad is not None)
    assert g_rationale > 0
    assert (g_answer > 0) == reaches_answer_model


def test_rl_forward_draws_n_samples_per_item_and_scores_each_with_its_own_item(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, coupling="rl", rl_num_samples=64)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    out = trainer.model(coupling="rl", num_samples=64, **batch)
    assert out["samples"].shape == (3, 64)
    # the per-answer rationale scores of item b come from item b's own inputs: recompute item 1 alone
    single = trainer.data_collator([trainer.train_dataset[1]])
    trainer.model.eval()
    with torch.no_grad():
        alone = trainer.model(coupling="eval", **single)["pair_rationale_logits"][0]
        together = trainer.model(coupling="eval", **batch)["pair_rationale_logits"][1]
    assert torch.allclose(alone, together, atol=1e-4)


@pytest.mark.parametrize("coupling,feed", [("gumbel", "mixture"), ("softmax", "mixture"), ("rl", "predicted")])
def test_evaluation_is_deterministic_and_feeds_the_named_answer(corpus, tmp_path, coupling, feed):
    trainer = make_trainer(corpus, tmp_path, coupling=coupling)
    assert trainer.args.eval_answer_feed == feed  # the default is named in the config, per coupling
    torch.manual_seed(0)
    first = trainer.predict(trainer.eval_dataset)
    torch.manual_seed(123)
    second = trainer.predict(trainer.eval_dataset)
    for a, b in zip(first.predictions, second.predictions):
        assert np.array_equal(a, b)  # no Gumbel noise, no sampling
    z_a, pair, fed = first.predictions
    assert pair.shape == (len(trainer.eval_dataset), 16) and fed.shape == (len(trainer.eval_dataset), 4)
    # the fed rationale scores: f_R under softmax(z_A) (eq. 1's mixture, τ_end = 1) or under the argmax answer
    batch = trainer.data_collator([trainer.eval_dataset[i] for i in range(len(trainer.eval_dataset))])
    model = trainer.model.eval()
    with torch.no_grad():
        z = model.answer_model(**{k[2:]: v for k, v in batch.items() if k.startswith("a_") and k != "a_labels"},
                               **{k: batch[k] for k in ("boxes", "box_mask", "pixel_values", "region_features") if k in batch})["logits"]
        w = torch.softmax(z, -1) if feed == "mixture" else torch.nn.functional.one_hot(z.argmax(-1), 4).float()
        want = model.scorer(model.rationale_model, batch, w[:, None])[0][:, 0]
    assert np.allclose(fed, want.numpy(), atol=1e-4)


def test_joint_metrics_score_q2ar_with_the_fed_answer():
    answer = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])  # item 0 predicts answer 0 (right), item 1 answer 1 (wrong)
    pair = np.zeros((2, 16))
    pair[0, 4 * 0 + 2] = 5  # item 0: under answer 0, rationale 2
    pair[1, 4 * 1 + 3] = 5  # item 1: under its predicted (wrong) answer 1, rationale 3 (right rationale)
    pair[1, 4 * 2 + 0] = 5  # item 1: under the right answer 2, rationale 0 (wrong)
    labels = np.array([4 * 0 + 2, 4 * 2 + 3])
    # without fed scores: the predicted answer's row
    m = joint_metrics(EvalPrediction(predictions=(answer, pair), label_ids=labels))
    assert m["q2a"] == 50.0 and m["q2ar"] == 50.0
    assert m["qa2r"] == 50.0  # right answer fed: item 0 right, item 1 wrong
    assert m["qa2r_predicted_answer"] == 100.0
    assert m["q2ar_pairs16"] == 50.0  # item 0's best pair (0, 2) is right; item 1's best is (1, 3)
    # with the mixture's scores: item 0's mixture picks rationale 1 (wrong)
    fed = np.array([[0, 5.0, 0, 0], [0, 0, 0, 5.0]])
    m = joint_metrics(EvalPrediction(predictions=(answer, pair, fed), label_ids=labels))
    assert m["q2ar"] == 0.0 and m["qa2r_predicted_answer"] == 50.0


def test_gumbel_tau_anneals_linearly_per_optimizer_step(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, coupling="gumbel", gumbel_tau_start=5.0, gumbel_tau_end=1.0, gumbel_anneal_epochs=4)
    trainer._update_steps_per_epoch = 2
    taus = []
    for step in (0, 2, 4, 6, 8, 12, 19):
        trainer.state.global_step = step
        taus.append(trainer.current_tau())
    assert taus == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0])
    # training with gradient accumulation 2 (16 items / batch 4 = 4 micro-batches = 2 optimizer steps per epoch):
    # both micro-batches of an optimizer step run at that step's τ
    trainer = make_trainer(corpus, tmp_path, coupling="gumbel", gumbel_tau_start=5.0, gumbel_tau_end=1.0,
                           gumbel_anneal_epochs=4, gradient_accumulation_steps=2, max_steps=3)
    seen = []
    current = trainer.current_tau
    trainer.current_tau = lambda: seen.append(current()) or seen[-1]
    trainer.train()
    assert seen == pytest.approx([5.0, 5.0, 4.5, 4.5, 4.0, 4.0])  # τ(k) = 5 - 4 (k / 2) / 4 at optimizer step k


def test_views_of_a_batch_belong_to_the_same_item(corpus, tmp_path):
    # direct16 pairs answer and rationale scores of one item: the shuffled batches must keep them together
    trainer = make_trainer(corpus, tmp_path, coupling="direct16")
    batch = next(iter(trainer.get_train_dataloader()))
    a_ids, slot_ids = batch["a_input_ids"], batch["slot_input_ids"]
    for b in range(a_ids.shape[0]):
        real = batch["a_attention_mask"][b, 0] == 1
        n_q = int(((batch["a_token_type_ids"][b, 0] == 0) & real).sum()) - 1  # [CLS] question (without [SEP])
        assert torch.equal(a_ids[b, 0, :n_q], slot_ids[b, 0, :n_q])
        assert (batch["j_labels"][b] // 4).item() == batch["a_labels"][b].item()
    _, _, tok, train_ds, _ = corpus
    q2a = train_ds.select_columns(["annot_id"])
    with pytest.raises(ValueError, match="not aligned"):
        merge_views({"a": q2a, "j": q2a.select(list(range(1, len(q2a))) + [0])})


@pytest.mark.parametrize("backbone,coupling", [("vcr", "softmax"), ("visualbert", "rl")])
def test_run_joint_end_to_end(corpus, tmp_path, backbone, coupling):
    train, val, tok, _, _ = corpus
    out = tmp_path / "joint"
    metrics = run_joint(joint_args(out, coupling=coupling, backbone=backbone), train, val, tok, builder(backbone, tok))
    assert {"q2a", "qa2r", "q2ar", "qa2r_predicted_answer"} <= set(metrics)
    assert (out / "training_complete").exists() and (out / "README.md").exists()
    if backbone == "visualbert":
        assert isinstance(VisualBertForVcr.from_pretrained(out / "f_R"), VisualBertForVcr)
    else:
        from transformers import AutoModel

        assert type(AutoModel.from_pretrained(out / "f_R")).__name__ == "VcrForMultipleChoice"


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="coupling must be one of"):
        JointConfig(output_dir=str(tmp_path), coupling="hard", use_cpu=True)
    with pytest.raises(ValueError, match="loss_ratio"):
        JointConfig(output_dir=str(tmp_path), loss_ratio="1-4", use_cpu=True)
    assert JointConfig(output_dir=str(tmp_path), loss_ratio="1:4", use_cpu=True).loss_weights == (1.0, 4.0)
    with pytest.raises(ValueError, match="rl_baseline"):
        JointConfig(output_dir=str(tmp_path), rl_baseline="mean", use_cpu=True)
    with pytest.raises(ValueError, match="eval_answer_feed"):
        JointConfig(output_dir=str(tmp_path), eval_answer_feed="sampled", use_cpu=True)


@pytest.mark.parametrize("coupling", ["direct16", "softmax", "rl"])
def test_loss_ratio_weights_every_coupling(corpus, tmp_path, coupling):
    # loss_ratio is never ignored: 1:0 leaves CE_A alone, and the loss is linear in the two weights
    trainer = make_trainer(corpus, tmp_path, coupling=coupling)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model.eval()  # no dropout: the three evaluations see one function

    def loss_at(ratio):
        trainer.args.loss_ratio = ratio
        torch.manual_seed(0)  # the same RL samples
        with torch.no_grad():
            return trainer.compute_loss(model, dict(batch)).item()

    only_a, only_r, mixed = loss_at("1:0"), loss_at("0:1"), loss_at("0.2:0.8")
    with torch.no_grad():
        z = trainer.compute_loss(model, dict(batch), return_outputs=True)[1]["answer_logits"]
    from hf_vcr.losses.multiple_choice import multiple_choice_loss

    assert only_a == pytest.approx(multiple_choice_loss(z, batch["a_labels"]).item(), abs=1e-6)
    assert mixed == pytest.approx(0.2 * only_a + 0.8 * only_r, abs=1e-5)
