"""VcrForMultipleChoice: the output contract, Auto registration, save/load, RoIAlign."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMultipleChoice

import hf_vcr  # noqa: F401
from hf_vcr.models import VcrConfig, VcrForMultipleChoice
from hf_vcr.models.roi_align import roi_align


def batch(B=2, C=4, L=10, N=5, source="backbone", seed=0):
    g = torch.Generator().manual_seed(seed)
    b = {
        "input_ids": torch.randint(5, 100, (B, C, L), generator=g),
        "attention_mask": torch.ones(B, C, L, dtype=torch.long),
        "token_type_ids": torch.zeros(B, C, L, dtype=torch.long),
        "object_ids": torch.randint(-1, N, (B, C, L), generator=g),
        "boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]).repeat(B, N, 1),
        "box_mask": torch.ones(B, N),
        "labels": torch.tensor([1, 3])[:B],
    }
    if source == "backbone":
        b["pixel_values"] = torch.randn(B, 3, 64, 64, generator=g)
    else:
        b["region_features"] = torch.randn(B, N, 32, generator=g)
    return b


@pytest.mark.parametrize("source", ["backbone", "features"])
def test_output_contract(source):
    torch.manual_seed(0)
    model = VcrForMultipleChoice(VcrConfig.tiny(visual_source=source)).eval()
    out = model(**batch(source=source))
    assert out.logits.shape == (2, 4)
    assert out.pooled_output.shape == (2, 4, model.config.hidden_size)
    expected = torch.nn.functional.cross_entropy(out.logits, torch.tensor([1, 3]))
    assert torch.allclose(out.loss, expected)


def test_image_and_grounding_change_the_scores():
    torch.manual_seed(0)
    model = VcrForMultipleChoice(VcrConfig.tiny()).eval()
    b = batch()
    base = model(**b).logits
    other_pixels = dict(b, pixel_values=torch.randn_like(b["pixel_values"]))
    assert not torch.allclose(model(**other_pixels).logits, base)
    no_grounding = dict(b, object_ids=torch.full_like(b["object_ids"], -1))
    assert not torch.allclose(model(**no_grounding).logits, base)
    # padding objects must not matter
    padded = dict(b, boxes=torch.cat([b["boxes"], torch.rand(2, 2, 4) * 60], 1), box_mask=torch.cat([b["box_mask"], torch.zeros(2, 2)], 1))
    assert torch.allclose(model(**padded).logits, base, atol=1e-5)


def test_all_padding_choices_never_win():
    model = VcrForMultipleChoice(VcrConfig.tiny()).eval()
    b = batch()
    b["attention_mask"][:, 2:] = 0
    logits = model(**b).logits
    assert (logits.argmax(-1) < 2).all()


def test_auto_classes_save_and_reload_same_logits(tmp_path):
    torch.manual_seed(0)
    model = VcrForMultipleChoice(VcrConfig.tiny()).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), VcrConfig)
    for auto in (AutoModel, AutoModelForMultipleChoice):
        reloaded = auto.from_pretrained(tmp_path).eval()
        assert isinstance(reloaded, VcrForMultipleChoice)
        b = batch()
        assert torch.equal(reloaded(**b).logits, model(**b).logits)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = VcrForMultipleChoice(VcrConfig.tiny(fusion_dropout=0.0, classifier_dropout=0.0))
    model.config.text_config.hidden_dropout_prob = 0.0
    b = batch()
    model.eval()
    model(**b).loss.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.eval()
    model.vcr.gradient_checkpointing = True
    model.vcr.training = True  # checkpoint path, still no dropout
    model(**b).loss.backward()
    for n, p in model.named_parameters():
        if n in ref:
            assert torch.allclose(p.grad, ref[n], atol=1e-6), n


def test_load_text_encoder_from_local_directory(tmp_path):
    config = VcrConfig.tiny()
    bert = AutoModel.from_config(config.text_config)
    bert.save_pretrained(tmp_path)
    model = VcrForMultipleChoice(config)
    model.load_text_encoder(str(tmp_path))
    for (n, p), q in zip(model.vcr.text_encoder.state_dict().items(), bert.state_dict().values()):
        assert torch.equal(p, q), n


def _bilinear(f, y, x):
    h, w = f.shape
    if y < -1 or y > h or x < -1 or x > w:
        return 0.0
    y, x = min(max(y, 0), h - 1), min(max(x, 0), w - 1)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    dy, dx = y - y0, x - x0
    return f[y0, x0] * (1 - dy) * (1 - dx) + f[y0, x1] * (1 - dy) * dx + f[y1, x0] * dy * (1 - dx) + f[y1, x1] * dy * dx


def test_roi_align_matches_a_direct_computation():
    """RoIAlign (aligned=True): the mean of s*s bilinear samples per bin, written out by hand."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 2, 9, 11, generator=g)
    boxes = torch.tensor([[[3.0, 2.0, 17.0, 14.0], [0.0, 0.0, 22.0, 18.0]]])
    scale, r, s = 0.5, 3, 2
    out = roi_align(feats, boxes, r, scale, s)
    f = feats[0].numpy()
    for n, (x1, y1, x2, y2) in enumerate(boxes[0].tolist()):
        x1, y1, x2, y2 = x1 * scale - 0.5, y1 * scale - 0.5, x2 * scale - 0.5, y2 * scale - 0.5
        bw, bh = (x2 - x1) / r, (y2 - y1) / r
        for c in range(2):
            for i in range(r):
                for j in range(r):
                    vals = [
                        _bilinear(f[c], y1 + (i + (a + 0.5) / s) * bh, x1 + (j + (b + 0.5) / s) * bw)
                        for a in range(s)
                        for b in range(s)
                    ]
                    assert out[0, n, c, i, j].item() == pytest.approx(float(np.mean(vals)), abs=1e-5)
