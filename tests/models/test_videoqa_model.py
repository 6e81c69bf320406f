"""hf_vcr's VideoQA model: shapes, Auto registration, safetensors round trip, any text encoder, the causal mask."""

import os

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForMultipleChoice, AutoModelForSequenceClassification

import hf_vcr  # noqa: F401  (registers the Auto classes)
from hf_vcr.models import VideoQaConfig, VideoQaForClassification, VideoQaForMultipleChoice, VideoQaModel

torch.set_num_threads(1)


def _inputs(b=3, c=5, k=8, dim=64, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (b, c, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :, -2:] = 0
    return torch.randn(b, k, dim, generator=g), ids, mask


def test_multiple_choice_forward_shapes_loss_and_mask():
    torch.manual_seed(0)
    model = VideoQaForMultipleChoice(VideoQaConfig.tiny()).eval()
    clips, ids, mask = _inputs()
    labels = torch.tensor([0, 4, 2])
    out = model(clip_features=clips, input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (3, 5) and out.pooled_output.shape == (3, 5, 32)
    assert out.causal_mask.shape == (3, 8) and out.causal_probs.shape == (3, 8)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels))
    # inference is deterministic and the mask is the partition p_c > p_e of the grounding indicator
    again = model(clip_features=clips, input_ids=ids, attention_mask=mask)
    assert torch.equal(out.causal_mask, again.causal_mask) and torch.equal(out.logits, again.logits)
    enc = model.encode(clips, ids, mask)
    p_c, p_e = model.videoqa.grounding.probabilities(enc["v"], enc["q_vec"])
    assert torch.equal(out.causal_mask.bool(), p_c > p_e)
    # the probability with which training draws each clip causal: sigmoid(p_c - p_e) for eq. 8 as written
    assert torch.allclose(out.causal_probs, torch.sigmoid(p_c - p_e))
    assert torch.equal(out.causal_mask.bool(), out.causal_probs > 0.5)
    # padded words do not change the answer
    ids2 = ids.clone()
    ids2[0, :, -2:] = 3
    assert torch.allclose(model(clip_features=clips, input_ids=ids2, attention_mask=mask).logits, out.logits, atol=1e-5)


def test_answer_runs_stacked_views_like_separate_calls():
    """EIGV stacks all views on the batch axis: one call must equal the per-view calls."""
    torch.manual_seed(0)
    model = VideoQaForMultipleChoice(VideoQaConfig.tiny()).eval()
    clips, ids, mask = _inputs()
    enc = model.encode(clips, ids, mask)
    v2 = enc["v"].flip(0)
    logits, pooled = model.answer(torch.cat([enc["v"], v2]), torch.cat([enc["q_tokens"]] * 2), torch.cat([enc["q_mask"]] * 2))
    l1, _ = model.answer(enc["v"], enc["q_tokens"], enc["q_mask"])
    l2, _ = model.answer(v2, enc["q_tokens"], enc["q_mask"])
    assert torch.allclose(logits, torch.cat([l1, l2]), atol=1e-5)
    assert model.answer_representation(pooled).shape == (6, 5 * 32)


def test_auto_classes_and_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VideoQaForMultipleChoice(VideoQaConfig.tiny()).eval()
    clips, ids, mask = _inputs()
    model.save_pretrained(tmp_path)
    assert os.path.isfile(tmp_path / "model.safetensors")
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, VideoQaConfig) and config.text_config.model_type == "bert"
    loaded = AutoModelForMultipleChoice.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, VideoQaForMultipleChoice)
    assert torch.allclose(
        loaded(clip_features=clips, input_ids=ids, attention_mask=mask).logits, model(clip_features=clips, input_ids=ids, attention_mask=mask).logits, atol=1e-6
    )
    assert isinstance(AutoModel.from_config(config), VideoQaModel)


def test_classification_head_and_auto_class(tmp_path):
    torch.manual_seed(0)
    config = VideoQaConfig.tiny(num_answers=7, id2label={i: f"ans{i}" for i in range(7)})
    model = VideoQaForClassification(config).eval()
    clips, ids, mask = _inputs()
    labels = torch.tensor([1, -100, 6])
    out = model(clip_features=clips, input_ids=ids[:, 0], attention_mask=mask[:, 0], labels=labels)
    assert out.logits.shape == (3, 7)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits[[0, 2]], labels[[0, 2]]))
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert isinstance(loaded, VideoQaForClassification) and loaded.config.id2label[6] == "ans6"


@pytest.mark.parametrize(
    "text_config",
    [
        {"model_type": "distilbert", "vocab_size": 128, "dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 64},
        {"model_type": "roberta", "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
         "intermediate_size": 64, "max_position_embeddings": 70, "pad_token_id": 1},
    ],
)
def test_any_transformers_text_encoder(text_config):
    torch.manual_seed(0)
    model = VideoQaForMultipleChoice(VideoQaConfig.tiny(text_config=text_config)).eval()
    assert model.videoqa.text_encoder.config.model_type == text_config["model_type"]
    clips, ids, mask = _inputs()
    out = model(clip_features=clips, input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    assert out.logits.shape == (3, 5)


def test_bad_shapes_are_clear_errors():
    model = VideoQaForMultipleChoice(VideoQaConfig.tiny())
    clips, ids, mask = _inputs()
    with pytest.raises(ValueError, match="num_clips=8"):
        model(clip_features=clips[:, :5], input_ids=ids)
    with pytest.raises(ValueError, match="visual_dim=64"):
        model(clip_features=clips[..., :10], input_ids=ids)
    with pytest.raises(ValueError, match=r"\[batch, num_choices, length\]"):
        model(clip_features=clips, input_ids=ids[:, 0])
