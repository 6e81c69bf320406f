"""EIGV losses (Li et al., MM 2022) against independent re-computations of the paper's equations."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_vcr.losses.eigv import (
    causal_probability,
    causal_ratio_penalty,
    disrupt,
    eigv_total_loss,
    gumbel_split,
    infonce_loss,
    intervene,
    mixed_target_cross_entropy,
    one_hot_targets,
    sample_other_indices,
    split_scene,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("logits", ["probabilities", "log_probabilities"])
def test_gumbel_split_eq8_hard_straight_through_and_deterministic(logits):
    g = torch.Generator().manual_seed(0)
    p_c = torch.softmax(torch.randn(3, 6, generator=g), -1).requires_grad_(True)
    p_e = torch.softmax(torch.randn(3, 6, generator=g), -1).requires_grad_(True)
    noise = -torch.log(-torch.log(torch.rand(3, 6, 2, generator=g)))
    tau = 0.7
    out = gumbel_split(p_c, p_e, tau=tau, hard=True, stochastic=True, gumbel_noise=noise, logits=logits)
    # independent: for each clip, softmax over (l + g) / tau with l = [p_c, p_e] (eq. 8 as written, the released
    # code's F.gumbel_softmax(score)) or l = [log p_c, log p_e]; then the one-hot of the argmax
    f = (lambda x: x) if logits == "probabilities" else math.log
    soft = []
    for b in range(3):
        row = []
        for i in range(6):
            a0 = (f(p_c[b, i].item()) + noise[b, i, 0].item()) / tau
            a1 = (f(p_e[b, i].item()) + noise[b, i, 1].item()) / tau
            z = math.exp(a0) + math.exp(a1)
            row.append([math.exp(a0) / z, math.exp(a1) / z])
        soft.append(row)
    soft = torch.tensor(soft)
    hard = F.one_hot(soft.argmax(-1), 2).float()
    assert torch.equal(out.detach(), hard)
    assert torch.allclose(out.sum(-1), torch.ones(3, 6))
    # straight-through: the gradient is the soft sample's gradient
    w = torch.randn(3, 6, 2, generator=g)
    (out * w).sum().backward()
    grad_c = p_c.grad.clone()
    p_c.grad = None
    p_e.grad = None
    stacked = torch.stack([p_c, p_e], -1)
    soft_auto = torch.softmax(((stacked if logits == "probabilities" else stacked.log()) + noise) / tau, -1)
    (soft_auto * w).sum().backward()
    assert torch.allclose(grad_c, p_c.grad, atol=1e-6)
    # evaluation: no noise, causal iff p_c > p_e
    det = gumbel_split(p_c.detach(), p_e.detach(), stochastic=False, logits=logits)
    assert torch.equal(det[..., 0].bool(), p_c.detach() > p_e.detach())


@pytest.mark.parametrize("logits", ["probabilities", "log_probabilities"])
def test_causal_probability_is_the_draw_frequency(logits):
    g = torch.Generator().manual_seed(5)
    p_c = torch.softmax(3 * torch.randn(1, 8, generator=g), -1)
    p_e = torch.softmax(3 * torch.randn(1, 8, generator=g), -1)
    tau = 0.5
    expected = causal_probability(p_c, p_e, logits)  # the hard draw does not depend on tau
    if logits == "probabilities":
        assert torch.allclose(expected, torch.sigmoid(p_c - p_e))
    else:
        assert torch.allclose(expected, p_c / (p_c + p_e), atol=1e-6)
    torch.manual_seed(0)
    draws = torch.stack([gumbel_split(p_c, p_e, tau=tau, logits=logits)[..., 0] for _ in range(4000)]).mean(0)
    assert torch.allclose(draws, expected, atol=0.03)


def test_probability_logits_make_the_clips_compete():
    """With eq. 8 as written the logit gaps sum to zero over the clips (both attentions are softmaxes), so a
    p_e peaked on one clip leaves the other clips near a coin flip; read as log-probabilities the same p_e
    makes every other clip causal almost surely (the collapse measured in docs/eigv.md)."""
    k = 16
    p_c = torch.full((1, k), 1.0 / k)
    p_e = torch.full((1, k), 1e-6)
    p_e[0, 0] = 1.0 - (k - 1) * 1e-6
    as_written = causal_probability(p_c, p_e, "probabilities")
    as_log = causal_probability(p_c, p_e, "log_probabilities")
    assert float((torch.stack([p_c, p_e], -1)[..., 0] - torch.stack([p_c, p_e], -1)[..., 1]).sum()) == pytest.approx(0.0, abs=1e-5)
    assert as_log[0, 1:].min() > 0.999
    assert as_written[0, 1:].max() < 0.52


def test_split_scene_eq9_partitions_the_video():
    v = torch.randn(2, 5, 4)
    ind = F.one_hot(torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]]), 2).float()
    c, e = split_scene(v, ind)
    assert torch.allclose(c + e, v)
    assert torch.equal(c[0, 1], torch.zeros(4)) and torch.equal(c[0, 0], v[0, 0])
    assert torch.equal(e[1, 2], torch.zeros(4)) and torch.equal(e[1, 0], v[1, 0])


def test_intervene_eq10_to_14_against_loop():
    g = torch.Generator().manual_seed(1)
    b, k, d, n_ans = 4, 5, 3, 6
    c, e = torch.randn(b, k, d, generator=g), torch.randn(b, k, d, generator=g)
    q = torch.randn(b, 7, d, generator=g)
    a = one_hot_targets(torch.tensor([0, 3, 5, 2]), n_ans)
    partner = torch.tensor([2, 0, 3, 1])
    lam0, lam1 = torch.tensor([0.1, 0.5, 0.9, 0.3]), torch.tensor([0.7, 0.2, 0.4, 0.95])
    v_star, q_star, a_star = intervene(c, e, q, a, partner, lam0, lam1)
    for i in range(b):
        j, l0, l1 = partner[i].item(), lam0[i].item(), lam1[i].item()
        c_i = l0 * c[i] + (1 - l0) * c[j]  # eq. 10
        q_i = l0 * q[i] + (1 - l0) * q[j]  # eq. 11
        a_i = l0 * a[i] + (1 - l0) * a[j]  # eq. 12
        e_i = l1 * e[i] + (1 - l1) * e[j]  # eq. 13
        assert torch.allclose(v_star[i], c_i + e_i, atol=1e-6)  # eq. 14
        assert torch.allclose(q_star[i], q_i, atol=1e-6)
        assert torch.allclose(a_star[i], a_i, atol=1e-6)
    assert torch.allclose(a_star.sum(-1), torch.ones(b))
    # a scalar ratio broadcasts
    v2, _, _ = intervene(c, e, q, a, partner, 0.25, 0.5)
    assert torch.allclose(v2, 0.25 * c + 0.75 * c[partner] + 0.5 * e + 0.5 * e[partner])


def test_disrupt_positive_and_negative_views():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(2, 4, 3, generator=g)
    ind = F.one_hot(torch.tensor([[0, 0, 1, 1], [1, 0, 1, 0]]), 2).float()
    s = torch.randn(2, 3, 4, 3, generator=g)  # 3 substitutes per anchor
    pos = disrupt(v, ind, s[:, :1], "environment")
    neg = disrupt(v, ind, s, "causal")
    assert pos.shape == (2, 1, 4, 3) and neg.shape == (2, 3, 4, 3)
    for b in range(2):
        for i in range(4):
            causal = ind[b, i, 0] == 1
            assert torch.equal(pos[b, 0, i], v[b, i] if causal else s[b, 0, i])
            for n in range(3):
                assert torch.equal(neg[b, n, i], s[b, n, i] if causal else v[b, i])
    with pytest.raises(ValueError, match="replace"):
        disrupt(v, ind, s, "both")


def test_sample_other_indices_never_the_anchor_and_respects_allowed():
    torch.manual_seed(0)
    idx = sample_other_indices(5, 400)
    assert idx.shape == (5, 400)
    for i in range(5):
        assert not (idx[i] == i).any()
        assert set(idx[i].tolist()) == set(range(5)) - {i}  # every other row is reachable
    allowed = torch.ones(4, 4, dtype=torch.bool)
    allowed[0, 1] = allowed[0, 2] = False  # anchor 0 may only use row 3
    allowed[1, :] = False  # anchor 1 has nothing allowed: falls back to every other row
    idx = sample_other_indices(4, 200, allowed=allowed)
    assert (idx[0] == 3).all()
    assert not (idx[1] == 1).any() and len(set(idx[1].tolist())) == 3
    with pytest.raises(ValueError, match="at least 2"):
        sample_other_indices(1, 3)


def _infonce_reference(a, p, n, temperature=1.0, normalize=False):
    losses = []
    for i in range(a.shape[0]):
        ai, pi, ni = a[i], p[i], n[i]
        if normalize:
            ai, pi, ni = ai / ai.norm(), pi / pi.norm(), ni / ni.norm(dim=-1, keepdim=True)
        pos = torch.exp(torch.dot(ai, pi) / temperature)
        neg = sum(torch.exp(torch.dot(ai, ni[j]) / temperature) for j in range(ni.shape[0]))
        losses.append(-torch.log(pos / (pos + neg)))  # eq. 18
    return torch.stack(losses).mean()


@pytest.mark.parametrize("temperature,normalize", [(1.0, False), (0.1, True)])
def test_infonce_eq18_values_and_gradients(temperature, normalize):
    g = torch.Generator().manual_seed(3)
    a = (0.5 * torch.randn(4, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    p = (0.5 * torch.randn(4, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    n = (0.5 * torch.randn(4, 3, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    ours = infonce_loss(a, p, n, temperature=temperature, normalize=normalize)
    ref = _infonce_reference(a, p, n, temperature, normalize)
    assert torch.allclose(ours, ref, atol=1e-10)
    g_ours = torch.autograd.grad(ours, (a, p, n))
    g_ref = torch.autograd.grad(ref, (a, p, n))
    for x, y in zip(g_ours, g_ref):
        assert torch.allclose(x, y, atol=1e-10)
    # the positive pulls: moving p towards a lowers the loss
    assert infonce_loss(a, a, n, temperature=temperature, normalize=normalize) < ours
    with pytest.raises(ValueError, match="negatives"):
        infonce_loss(a, p, n[:, 0])


def test_mixed_target_cross_entropy_eq19_values_and_gradient():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    a, b = one_hot_targets(torch.tensor([0, 2, 4]), 5, torch.float64), one_hot_targets(torch.tensor([1, 2, 0]), 5, torch.float64)
    lam = torch.tensor([0.3, 0.6, 1.0], dtype=torch.float64)[:, None]
    target = lam * a + (1 - lam) * b
    loss = mixed_target_cross_entropy(logits, target)
    ref = 0.0
    for i in range(3):
        z = sum(math.exp(x) for x in logits[i].tolist())
        ref += -sum(target[i, j].item() * (logits[i, j].item() - math.log(z)) for j in range(5))
    assert abs(loss.item() - ref / 3) < 1e-10
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.allclose(grad, (torch.softmax(logits, -1) - target) / 3, atol=1e-12)
    # one-hot targets: plain cross entropy
    assert torch.allclose(mixed_target_cross_entropy(logits, a), F.cross_entropy(logits, torch.tensor([0, 2, 4])))


def test_total_eq20_and_label_checks():
    erm, cl = torch.tensor(1.5), torch.tensor(2.0)
    assert eigv_total_loss(erm, cl).item() == pytest.approx(1.5 + 0.75 * 2.0)  # paper beta = 0.75
    assert eigv_total_loss(erm, cl, beta=0.0125).item() == pytest.approx(1.5 + 0.0125 * 2.0)
    with pytest.raises(ValueError, match=r"valid class in \[0, 5\)"):
        one_hot_targets(torch.tensor([1, -100]), 5)


def test_causal_ratio_penalty_optional_prior_value_and_gradient():
    """The non-paper prior: mean over videos of (mean clip probability of being causal - r)^2."""
    prob = torch.tensor([[0.9, 0.1, 0.5, 0.5], [1.0, 1.0, 0.0, 1.0]], requires_grad=True)
    got = causal_ratio_penalty(prob, 0.25)
    expected = ((0.5 - 0.25) ** 2 + (0.75 - 0.25) ** 2) / 2
    assert got.item() == pytest.approx(expected)
    got.backward()
    # d/dp_bi = 2 (mean_b - r) / K / B
    assert torch.allclose(prob.grad[0], torch.full((4,), 2 * 0.25 / 4 / 2))
    assert torch.allclose(prob.grad[1], torch.full((4,), 2 * 0.5 / 4 / 2))
