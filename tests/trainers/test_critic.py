"""LSKD critic: CE + MSE(QA) + MSE(rationale onto r_score), checkpoint with model card, AutoModel loading."""

import json
import os

import pytest
import torch

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine



def test_critic_step_losses_match_independent_computation(tmp_path):
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from hf_vcr.data.lskd import LskdCollator, load_lskd
    from hf_vcr.data.synthetic_lskd import write_synthetic_lskd
    from hf_vcr.data.tokenization import build_word_tokenizer
    from hf_vcr.models.configuration_lskd import tiny_critic_config
    from hf_vcr.models.modeling_lskd import LskdCriticModel
    from hf_vcr.trainers.critic_config import CriticConfig
    from hf_vcr.trainers.critic_trainer import CriticTrainer

    files = write_synthetic_lskd(str(tmp_path / "d"), n_images=0, n_mc=0, n_critic=12, seed=2)
    ds = load_lskd(files["critic"], files["images_dir"], threshold=None, cache_dir=str(tmp_path / "c"))
    assert set(ds["r_score"]) != set(ds["qa_score"]) or ds["r_score"] != ds["qa_score"]
    tok = build_word_tokenizer(["what color is the ball box cup hat in [ 0 1 2 3 4 5 6 7 ] ? answer : rationale : it is . inside looks",
                                "black white green blue red yellow"])
    ip = BlipImageProcessorPil(size={"height": 32, "width": 32})
    collator = LskdCollator(tok, ip, critic_targets=True)
    torch.manual_seed(0)
    model = LskdCriticModel(tiny_critic_config(vocab_size=len(tok)))
    batch = collator([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        out = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    expect_r = ((out.rationale_score - batch["r_score"]) ** 2).mean().item()
    expect_qa = ((out.qa_score - batch["qa_score"]) ** 2).mean().item()
    expect_ce = torch.nn.functional.cross_entropy(out.logits, batch["labels"]).item()
    args = CriticConfig(output_dir=str(tmp_path / "o"), per_device_train_batch_size=len(ds), max_steps=1, logging_steps=1,
                        report_to="none", save_strategy="no", learning_rate=1e-3)
    tr = CriticTrainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    tr.train()
    log = next(l for l in tr.state.log_history if "rationale_mse" in l)
    assert log["rationale_mse"] == pytest.approx(expect_r, rel=1e-4)
    assert log["qa_mse"] == pytest.approx(expect_qa, rel=1e-4)
    assert log["critic_ce"] == pytest.approx(expect_ce, rel=1e-4)
    assert log["loss"] == pytest.approx(0.5 * expect_r + 0.5 * expect_qa + expect_ce, rel=1e-4)  # released weights


def _critic_inputs(vocab=40, b=3, t=6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 3, 32, 32, generator=g), torch.randint(1, vocab, (b, t), generator=g), torch.ones(b, t, dtype=torch.long)


def test_released_critic_head_matches_independent_computation():
    """Released critic (blip2_critic.py): logits = mean over queries of itm_head(query output); each score = mean over
    queries of Linear-ReLU-Linear(query output). Values and gradients against a re-computation from the Q-Former
    query outputs."""
    from hf_vcr.models.configuration_lskd import tiny_critic_config
    from hf_vcr.models.modeling_lskd import LskdCriticModel

    torch.manual_seed(0)
    model = LskdCriticModel(tiny_critic_config(vocab_size=40))
    assert model.config.critic_head == "released" and not hasattr(model, "critic_head")
    px, ids, mask = _critic_inputs()
    out = model(pixel_values=px, input_ids=ids, attention_mask=mask)
    hidden = model.multimodal_query_output(model.vision_features(px), ids, mask).detach().requires_grad_()
    W, bias = model.itm_head.weight, model.itm_head.bias
    ref_logits = torch.stack([torch.stack([hidden[i, q] @ W.t() + bias for q in range(hidden.shape[1])]).mean(0) for i in range(3)])

    def mlp(head, h):
        l1, l2 = head[0], head[2]
        return torch.relu(h @ l1.weight.t() + l1.bias) @ l2.weight.t() + l2.bias

    ref_qa = torch.stack([mlp(model.qa_score_head, hidden[i]).mean() for i in range(3)])
    ref_r = torch.stack([mlp(model.rationale_score_head, hidden[i]).mean() for i in range(3)])
    assert torch.allclose(out.logits, ref_logits, atol=1e-6) and torch.allclose(out.itm_logits, out.logits)
    assert torch.allclose(out.qa_score, ref_qa, atol=1e-6) and torch.allclose(out.rationale_score, ref_r, atol=1e-6)
    # gradients of the critic loss w.r.t. the heads' parameters, through the independent formulas
    from hf_vcr.losses.lskd import critic_loss

    labels, qa_t, r_t = torch.tensor([1, 0, 1]), torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.5, 0.0, 1.0])
    heads = [model.itm_head.weight, model.qa_score_head[0].weight, model.rationale_score_head[2].bias]
    hidden2 = model.multimodal_query_output(model.vision_features(px), ids, mask).detach()
    o = model(pixel_values=px, input_ids=ids, attention_mask=mask)
    got = torch.autograd.grad(critic_loss(o.logits, labels, o.qa_score, qa_t, o.rationale_score, r_t)["loss"], heads)
    ref_logits = torch.stack([(hidden2[i] @ W.t() + bias).mean(0) for i in range(3)])
    ref_qa = torch.stack([mlp(model.qa_score_head, hidden2[i]).mean() for i in range(3)])
    ref_r = torch.stack([mlp(model.rationale_score_head, hidden2[i]).mean() for i in range(3)])
    ref_loss = (torch.nn.functional.cross_entropy(ref_logits, labels) + 0.5 * ((ref_qa - qa_t) ** 2).mean()
                + 0.5 * ((ref_r - r_t) ** 2).mean())
    want = torch.autograd.grad(ref_loss, heads)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-6)


def test_linear_critic_head_is_an_option():
    from hf_vcr.models.configuration_lskd import tiny_critic_config
    from hf_vcr.models.modeling_lskd import LskdCriticModel

    torch.manual_seed(0)
    model = LskdCriticModel(tiny_critic_config(vocab_size=40, critic_head="linear")).eval()
    px, ids, mask = _critic_inputs()
    out = model(pixel_values=px, input_ids=ids, attention_mask=mask)
    pooled = model.multimodal_query_output(model.vision_features(px), ids, mask).mean(1)
    assert torch.allclose(out.logits, model.critic_head(pooled), atol=1e-6)
    with pytest.raises(ValueError, match="critic_head"):
        tiny_critic_config(critic_head="mlp")


def test_critic_metrics_are_percent_and_null_when_undefined():
    from transformers import EvalPrediction

    from hf_vcr.trainers.critic_trainer import critic_metrics

    preds = torch.tensor([[0.9, 0, 0], [0.6, 0, 0], [0.2, 0, 0], [0.85, 0, 0]]).numpy()
    m = critic_metrics(0.8)(EvalPrediction(predictions=preds, label_ids=torch.tensor([1, 0, 0, 0]).numpy()))
    assert m == {"accuracy": 50.0, "precision_at_threshold": 50.0, "kept_fraction": 50.0, "accept_rate": 25.0}
    none = critic_metrics(0.99)(EvalPrediction(predictions=preds, label_ids=torch.tensor([1, 0, 0, 0]).numpy()))
    assert none["precision_at_threshold"] is None and json.loads(json.dumps(none))["precision_at_threshold"] is None


def test_train_critic_script_saves_loadable_checkpoint_with_card(tmp_path):
    from hf_vcr.flows import critic as train_critic
    from transformers import AutoModel

    cfg = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "configs", "critic_synthetic.yaml")
    results = train_critic.main([cfg, "--output_dir", str(tmp_path / "run"), "--synthetic_items", "60", "--max_steps", "4",
                                 "--per_device_train_batch_size", "8", "--logging_steps", "2", "--save_steps", "2"])
    assert "eval_accuracy" in results and "eval_rationale_mse" in results
    # issue 15: strict JSON (null, never NaN), accuracies in percent
    def no_constants(c):
        raise ValueError(f"non-strict JSON constant {c}")

    json.loads(json.dumps(results), parse_constant=no_constants)
    assert 1.0 < results["eval_accuracy"] <= 100.0 and 1.0 < results["eval_accept_rate"] < 100.0
    final = tmp_path / "run" / "final"
    m = AutoModel.from_pretrained(final)
    assert type(m).__name__ == "LskdCriticModel"
    card = (final / "README.md").read_text()
    assert "LSKD critic" in card and "eval_accuracy" in card and "model-index" in card
    assert os.path.isfile(tmp_path / "run" / "checkpoint-4" / "checkpoint_complete")
    assert json.load(open(tmp_path / "run" / "critic_results.json"))["eval_accuracy"] == pytest.approx(results["eval_accuracy"], abs=1e-6)
