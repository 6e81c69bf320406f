"""SOrT losses checked against independent re-computations of eq. 1-3 (values and gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_vcr.losses.gradcam import capture_activations
from hf_vcr.losses.sort import (
    contrastive_gradient_loss,
    gradcam_vectors,
    ground_truth_scores,
    reasoning_similarities,
    role_bce_losses,
    safe_cosine,
    sort_total_loss,
    vqa_bce,
)
from hf_vcr.models.modeling_vqa import VqaConfig, VqaForClassification

# two items: item 0 = R, S, S, I, I, I ; item 1 = R, S, I
ROLES = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1, 2])
ITEMS = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1])


def _cos(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def _released_distance(r, s):
    """sameerdharur/sorting-vqa cosine_distance for one pair: x / max(x), then 1 - x.y / (max(|x|, 1e-6) max(|y|, 1e-6))."""
    r, s = np.asarray(r, float), np.asarray(s, float)
    r, s = r / r.max(), s / s.max()
    return 1.0 - float(r @ s / (max(np.linalg.norm(r), 1e-6) * max(np.linalg.norm(s), 1e-6)))


def reference_cg(G, roles, items, mode="sq_iq"):
    """Eq. 2 written out with loops: per item, the mean over (S, I) pairs of max(0, cos(R,I) - cos(R,S))."""
    G = np.asarray(G, float)
    per_item = []
    for b in sorted(set(items.tolist())):
        idx = [q for q in range(len(roles)) if items[q] == b]
        r = [q for q in idx if roles[q] == 0][0]
        subs = [q for q in idx if roles[q] == 1]
        irr = [q for q in idx if roles[q] == 2]
        if mode == "sq_iq":
            vals = [max(0.0, _cos(G[r], G[i]) - _cos(G[r], G[s])) for s in subs for i in irr]
        elif mode == "sq_only":
            vals = [1.0 - _cos(G[r], G[s]) for s in subs]
        else:
            vals = [_released_distance(G[r], G[s]) for s in subs]
        if vals:
            per_item.append(sum(vals) / len(vals))
    return sum(per_item) / len(per_item)


@pytest.mark.parametrize("mode", ["sq_iq", "sq_only", "released"])
def test_contrastive_gradient_loss_matches_equation(mode):
    torch.manual_seed(0)
    G = torch.randn(9, 6, dtype=torch.float64)
    got = contrastive_gradient_loss(G, ROLES, ITEMS, mode=mode)
    assert got.item() == pytest.approx(reference_cg(G.numpy(), ROLES, ITEMS, mode), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("mode", ["sq_iq", "sq_only", "released"])
def test_contrastive_gradient_loss_gradients_match_finite_differences(mode):
    torch.manual_seed(1)
    G = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    loss = contrastive_gradient_loss(G, ROLES, ITEMS, mode=mode)
    (grad,) = torch.autograd.grad(loss, G)
    num = np.zeros(G.shape)
    base = G.detach().numpy()
    h = 1e-6
    for idx in np.ndindex(*G.shape):
        plus, minus = base.copy(), base.copy()
        plus[idx] += h
        minus[idx] -= h
        num[idx] = (reference_cg(plus, ROLES, ITEMS, mode) - reference_cg(minus, ROLES, ITEMS, mode)) / (2 * h)
    np.testing.assert_allclose(grad.numpy(), num, atol=1e-6)


def test_hinge_is_zero_when_subquestions_are_closer():
    r = torch.tensor([1.0, 0.0, 0.0])
    G = torch.stack([r, torch.tensor([1.0, 0.1, 0.0]), torch.tensor([0.0, 1.0, 0.0])])
    roles, items = torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long)
    assert contrastive_gradient_loss(G, roles, items).item() == 0.0
    # swapped: the irrelevant one is closer -> cos(R,I) - cos(R,S) exactly
    G2 = G[[0, 2, 1]]
    expected = _cos(G2[0], G2[2]) - _cos(G2[0], G2[1])
    assert contrastive_gradient_loss(G2, roles, items).item() == pytest.approx(expected)


def test_zero_vectors_are_safe():
    G = torch.zeros(9, 4, requires_grad=True)
    for mode in ("sq_iq", "sq_only", "released"):
        loss = contrastive_gradient_loss(G, ROLES, ITEMS, mode=mode)
        (grad,) = torch.autograd.grad(loss, G)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert safe_cosine(torch.zeros(2, 3), torch.ones(2, 3)).tolist() == [0.0, 0.0]
    # one zero reasoning vector among normal ones: still finite
    G = torch.randn(9, 4)
    G[0] = 0
    G.requires_grad_(True)
    (grad,) = torch.autograd.grad(contrastive_gradient_loss(G, ROLES, ITEMS), G)
    assert torch.isfinite(grad).all()


def test_released_loss_is_the_released_cosine_distance_module():
    # the released code, literally: per row, v / torch.max(v), then 1 - nn.CosineSimilarity(dim=1, eps=1e-6)
    torch.manual_seed(4)
    G = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    G_ref = G.detach().clone().requires_grad_(True)
    cos = torch.nn.CosineSimilarity(dim=1, eps=1e-6)
    per_item = []
    for b, (r, subs) in enumerate(((0, [1, 2]), (6, [7]))):
        d = [1 - cos((G_ref[r] / torch.max(G_ref[r]))[None], (G_ref[q] / torch.max(G_ref[q]))[None])[0] for q in subs]
        per_item.append(sum(d) / len(d))
    want = sum(per_item) / 2
    got = contrastive_gradient_loss(G, ROLES, ITEMS, mode="released")
    assert got.item() == pytest.approx(want.item(), abs=1e-9)
    (g,) = torch.autograd.grad(got, G)
    (g_ref,) = torch.autograd.grad(want, G_ref)
    assert torch.allclose(g, g_ref, atol=1e-9)


def test_cosine_is_scale_invariant_for_tiny_vectors():
    torch.manual_seed(5)
    a, b = torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    exact = torch.nn.functional.cosine_similarity(a, b, dim=1)
    for scale in (1.0, 1e-9, 1e-20):  # far below the 1e-8 norm floor
        assert torch.allclose(safe_cosine(a * scale, b * scale), exact, atol=1e-12)
        assert torch.allclose(reasoning_similarities(torch.cat([a[:1], b]) * scale, torch.tensor([0, 1, 1, 1]),
                                                     torch.zeros(4, dtype=torch.long))[1:],
                              torch.nn.functional.cosine_similarity(a[:1], b, dim=1), atol=1e-12)
    assert safe_cosine(torch.zeros(1, 3), torch.ones(1, 3)).item() == 0.0


def test_invalid_questions_and_items_are_masked():
    torch.manual_seed(2)
    G = torch.randn(9, 4, dtype=torch.float64)
    valid = torch.ones(9, dtype=torch.bool)
    valid[6] = False  # item 1's reasoning question has no ground-truth class: item 1 drops out
    valid[3] = False  # one irrelevant question of item 0 drops out
    got = contrastive_gradient_loss(G, ROLES, ITEMS, valid=valid)
    keep = [0, 1, 2, 4, 5]
    assert got.item() == pytest.approx(reference_cg(G.numpy()[keep], ROLES[keep], ITEMS[keep]))


def test_each_item_needs_one_reasoning_question():
    with pytest.raises(ValueError, match="exactly one reasoning question"):
        contrastive_gradient_loss(torch.randn(3, 2), torch.tensor([1, 1, 2]), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown SOrT mode"):
        contrastive_gradient_loss(torch.randn(3, 2), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long), mode="hinge")


def test_total_loss_is_eq3_with_paper_defaults():
    l_cg, r, s, i = (torch.tensor(x) for x in (0.5, 1.0, 2.0, 3.0))
    assert sort_total_loss(l_cg, r, s, i).item() == pytest.approx(0.5 + 2.27 * 1.0 + 2.27 * 2.0 + 0.0003 * 3.0)


def test_total_loss_with_the_released_weights():
    # pythia_introspect.yml: logit_bce_{reas,sq,oq} weight 0.33 each, distance_importance_loss weight 0.001, and every
    # one of these losses returns its mean times targets.size(1) (the number of answers)
    torch.manual_seed(6)
    n_answers = 7
    logits = torch.randn(9, n_answers, dtype=torch.float64, requires_grad=True)
    labels = (torch.rand(9, n_answers, dtype=torch.float64) > 0.7).double()
    G = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    bce = role_bce_losses(logits, labels, ROLES)
    l_cg = contrastive_gradient_loss(G, ROLES, ITEMS, mode="released")
    got = sort_total_loss(0.001 * n_answers * l_cg, *bce, 0.33, 0.33, 0.33)

    def bce_ref(rows):
        x, y = logits[rows], labels[rows]
        return torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="mean") * n_answers

    want = sum(0.33 * bce_ref(ROLES == role) for role in (0, 1, 2))
    want = want + 0.001 * n_answers * torch.tensor(reference_cg(G.detach().numpy(), ROLES, ITEMS, "released"), dtype=torch.float64)
    assert got.item() == pytest.approx(want.item(), abs=1e-9)


def test_bce_per_role_matches_formula():
    torch.manual_seed(3)
    logits, labels = torch.randn(9, 5, dtype=torch.float64), torch.rand(9, 5, dtype=torch.float64)
    r, s, i = role_bce_losses(logits, labels, ROLES)

    def ref(x, y):
        p = 1 / (1 + np.exp(-x))
        return float((-(y * np.log(p) + (1 - y) * np.log(1 - p))).mean(1).mean() * x.shape[1])

    for role, got in zip((0, 1, 2), (r, s, i)):
        m = (ROLES == role).numpy()
        assert got.item() == pytest.approx(ref(logits.numpy()[m], labels.numpy()[m]))
    assert vqa_bce(torch.zeros(0, 5), torch.zeros(0, 5)).item() == 0.0


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    model = VqaForClassification(VqaConfig.tiny(num_labels=6, vocab_size=30, image_feature_dim=8))
    return model.double()


def _batch(n_q=9, n_img=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n_q, 6, dtype=torch.float64)
    labels[torch.arange(n_q), torch.randint(0, 6, (n_q,), generator=g)] = 1.0
    return dict(
        input_ids=torch.randint(1, 30, (n_q, 5), generator=g),
        image_features=torch.randn(n_img, 4, 8, generator=g, dtype=torch.float64),
        question_image_index=ITEMS.clone(),
    ), labels


def test_gradcam_batched_equals_per_question():
    model = _tiny_model()
    inputs, labels = _batch()
    with capture_activations(model, "fusion") as cap:
        out = model(**inputs)
    scores, valid = ground_truth_scores(out.logits, labels)
    G = gradcam_vectors(scores, cap.output)
    assert torch.equal(cap.output, out.fused) and valid.all()
    for q in range(9):
        A = out.fused
        (g,) = torch.autograd.grad(out.logits[q, labels[q].argmax()], A, retain_graph=True)
        torch.testing.assert_close(G[q], (g * A)[q], rtol=1e-10, atol=1e-12)
        # only row q of the gradient is non-zero: rows do not interact after the fusion layer
        assert g[torch.arange(9) != q].abs().max() == 0


def test_gradcam_loss_trains_through_create_graph():
    """d L_CG / d θ through G = dy/dA ⊙ A (double backward) matches finite differences."""
    model = _tiny_model(seed=4)
    inputs, labels = _batch(seed=5)
    weight = model.classifier[0].weight

    def loss_value():
        with capture_activations(model, "fusion") as cap:
            out = model(**inputs)
        scores, valid = ground_truth_scores(out.logits, labels)
        return contrastive_gradient_loss(gradcam_vectors(scores, cap.output, create_graph=True), ROLES, ITEMS, valid, mode="sq_only")

    loss = loss_value()
    (grad,) = torch.autograd.grad(loss, weight)
    assert grad.abs().sum() > 0
    h = 1e-6
    rng = np.random.default_rng(0)
    for _ in range(5):
        i, j = int(rng.integers(weight.shape[0])), int(rng.integers(weight.shape[1]))
        with torch.no_grad():
            weight[i, j] += h
        up = loss_value().item()
        with torch.no_grad():
            weight[i, j] -= 2 * h
        down = loss_value().item()
        with torch.no_grad():
            weight[i, j] += h
        assert grad[i, j].item() == pytest.approx((up - down) / (2 * h), abs=1e-6, rel=1e-4)


def test_reasoning_similarities_rank_by_cosine():
    G = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    sims = reasoning_similarities(G, torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long))
    assert sims.tolist() == pytest.approx([1.0, 1 / math.sqrt(2), 0.0])


def test_capture_unknown_module_names_it():
    with pytest.raises(ValueError, match="no module named 'fuse'"):
        with capture_activations(_tiny_model(), "fuse"):
            pass
