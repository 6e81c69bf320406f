"""The Pythia-style VQA model: shapes, BCE, the named fusion module, save/load with the Auto classes,
batched image sharing, and the transformer / vision-backbone variants through double backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForVisualQuestionAnswering

import hf_vcr  # noqa: F401  (registers the Auto classes)
from hf_vcr.losses.gradcam import capture_activations
from hf_vcr.losses.sort import contrastive_gradient_loss, gradcam_vectors, ground_truth_scores
from hf_vcr.models import VqaConfig, VqaForClassification


def _inputs(n_q=6, n_img=2, vocab=40, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(5, vocab, (n_q, 7), generator=g),
        "attention_mask": torch.ones(n_q, 7, dtype=torch.long),
        "image_features": torch.randn(n_img, 5, dim, generator=g),
        "image_mask": torch.ones(n_img, 5, dtype=torch.long),
        "question_image_index": torch.tensor([0, 0, 0, 1, 1, 1])[:n_q],
    }


def test_forward_shapes_and_bce():
    torch.manual_seed(0)
    model = VqaForClassification(VqaConfig.tiny(num_labels=8, vocab_size=40))
    labels = torch.rand(6, 8)
    out = model(**_inputs(), labels=labels)
    assert out.logits.shape == (6, 8) and out.fused.shape == (6, 32) and out.attention.shape == (6, 5)
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(6))
    p = torch.sigmoid(out.logits)
    ref = -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean() * 8
    torch.testing.assert_close(out.loss, ref, rtol=1e-5, atol=1e-6)


def test_fusion_is_a_named_module_hooks_reach():
    model = VqaForClassification(VqaConfig.tiny())
    assert isinstance(model.get_submodule("fusion"), torch.nn.Module)
    with capture_activations(model, "fusion") as cap:
        out = model(**_inputs(vocab=60))
    assert torch.equal(cap.output, out.fused)


def test_question_image_index_equals_repeated_images_and_masked_regions_ignored():
    torch.manual_seed(1)
    model = VqaForClassification(VqaConfig.tiny(vocab_size=40)).eval()
    inputs = _inputs()
    out = model(**inputs)
    repeated = dict(inputs)
    repeated["image_features"] = inputs["image_features"][inputs["question_image_index"]]
    repeated["image_mask"] = inputs["image_mask"][inputs["question_image_index"]]
    del repeated["question_image_index"]
    torch.testing.assert_close(model(**repeated).logits, out.logits)
    masked = dict(inputs)
    masked["image_mask"] = inputs["image_mask"].clone()
    masked["image_mask"][:, -1] = 0
    changed = dict(masked)
    changed["image_features"] = inputs["image_features"].clone()
    changed["image_features"][:, -1] = 100.0
    torch.testing.assert_close(model(**masked).logits, model(**changed).logits)
    assert model(**masked).attention[:, -1].abs().max() == 0


def test_save_and_load_with_auto_classes(tmp_path):
    torch.manual_seed(2)
    model = VqaForClassification(VqaConfig.tiny(num_labels=4, vocab_size=40)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "hf_vcr_vqa"
    for auto in (AutoModel, AutoModelForVisualQuestionAnswering):
        loaded = auto.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, VqaForClassification)
        torch.testing.assert_close(loaded(**_inputs()).logits, model(**_inputs()).logits)


def _double_backward_ok(model, inputs, n_labels):
    labels = torch.zeros(inputs["input_ids"].shape[0], n_labels)
    labels[:, 1] = 1.0
    with capture_activations(model, "fusion") as cap:
        out = model(**inputs)
    scores, valid = ground_truth_scores(out.logits, labels)
    g = gradcam_vectors(scores, cap.output, create_graph=True)
    roles = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = contrastive_gradient_loss(g, roles, inputs["question_image_index"], valid, mode="sq_only") + out.logits.sum() * 0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)


def test_transformer_question_encoder_eager_attention_double_backward():
    text = {"model_type": "bert", "vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    torch.manual_seed(3)
    model = VqaForClassification(VqaConfig.tiny(question_encoder="transformer", text_config=text))
    assert model.question_encoder.encoder.config._attn_implementation == "eager"
    _double_backward_ok(model, _inputs(), 8)


def test_vision_backbone_variant():
    vit = {"model_type": "vit", "image_size": 16, "patch_size": 8, "num_channels": 3, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    torch.manual_seed(4)
    model = VqaForClassification(VqaConfig.tiny(vision_config=vit, image_feature_dim=16, vocab_size=40))
    inputs = _inputs()
    del inputs["image_features"], inputs["image_mask"]
    inputs["pixel_values"] = torch.randn(2, 3, 16, 16)
    out = model(**inputs)
    assert out.region_features.shape == (6, 5, 16)  # 4 patches + [CLS]
    _double_backward_ok(model, inputs, 8)


def test_bad_config_and_inputs():
    with pytest.raises(ValueError, match="needs a text_config"):
        VqaConfig(question_encoder="transformer")
    with pytest.raises(ValueError, match="'gru' or 'transformer'"):
        VqaConfig(question_encoder="lstm")
    model = VqaForClassification(VqaConfig.tiny(vocab_size=40))
    inputs = _inputs()
    del inputs["question_image_index"]
    with pytest.raises(ValueError, match="pass question_image_index"):
        model(**inputs)
    assert np.isfinite(model(**_inputs()).logits.detach().numpy()).all()
