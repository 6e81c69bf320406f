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
                                                            ("direct16", True), ("baseline75", False)])
def test_rationale_loss_gradient_reaches_the_answer_model_only_when_coupled(corpus, tmp_path, coupling, reaches_answer_model):
    # loss ratio 0:1 leaves only the QA→R term; its gradient reaches f_A through the weights/samples (not for the baseline)
    trainer = make_trainer(corpus, tmp_path, coupling=coupling, loss_ratio="0:1")
    model = trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    if coupling == "direct16":  # its 16-way loss has no ratio: check the answer logits take part in it
        reaches_answer_model = True
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


def test_evaluation_is_deterministic_and_feeds_the_predicted_answer(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, coupling="gumbel")
    torch.manual_seed(0)
    first = trainer.predict(trainer.eval_dataset)
    torch.manual_seed(123)
    second = trainer.predict(trainer.eval_dataset)
    for a, b in zip(first.predictions, second.predictions):
        assert np.array_equal(a, b)  # no Gumbel noise, no sampling
    assert first.predictions[1].shape == (len(trainer.eval_dataset), 16)
    # Q→AR counts an item only when the rationale chosen under the *predicted* answer is right
    answer = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])  # predicts 0, 0->... item 1 predicts answer 1
    pair = np.zeros((2, 16))
    pair[0, 4 * 0 + 2] = 5  # item 0: under answer 0, rationale 2
    pair[1, 4 * 1 + 3] = 5  # item 1: under its predicted (wrong) answer 1, rationale 3 (right rationale)
    pair[1, 4 * 2 + 0] = 5  # item 1: under the right answer 2, rationale 0 (wrong)
    labels = np.array([4 * 0 + 2, 4 * 2 + 3])
    m = joint_metrics(EvalPrediction(predictions=(answer, pair), label_ids=labels))
    assert m["q2a"] == 50.0 and m["q2ar"] == 50.0
    assert m["qa2r"] == 50.0  # right answer fed: item 0 right, item 1 wrong
    assert m["qa2r_predicted_answer"] == 100.0


def test_gumbel_tau_anneals_linearly_then_holds(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, coupling="gumbel", gumbel_tau_start=5.0, gumbel_tau_end=1.0, gumbel_anneal_epochs=4)
    taus = []
    for epoch in (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 9.5):
        trainer.state.epoch = epoch
        taus.append(trainer.current_tau())
    assert taus == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0])
    # during training the logged τ follows the schedule (16 items / batch 4 = 4 steps per epoch)
    trainer.args.max_steps = 2
    trainer.train()
    logged = [h["tau"] for h in trainer.state.log_history if "tau" in h]
    epochs = [h["epoch"] for h in trainer.state.log_history if "tau" in h]
    assert logged[0] == pytest.approx(5.0)  # step 1 runs at epoch 0
    assert logged[-1] == pytest.approx(5.0 - (epochs[-2] if len(epochs) > 1 else 0.0), abs=1e-6)


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
