"""Joint-coupling losses (eq. 1-4, section 3.4, section 4.3) against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from hf_vcr.losses.joint import (
    baseline75_answers,
    direct16_loss,
    gumbel_softmax_weights,
    gumbel_temperature,
    joint_objective,
    multiple_choice_loss,
    rationale_nll_per_answer,
    rl_expectation_loss,
    softmax_weights,
    weighted_answer_representation,
)


def test_eq1_weighted_answer_representation_value_and_gradient():
    torch.manual_seed(0)
    emb = torch.randn(2, 4, 3, 5, requires_grad=True)
    logits = torch.randn(2, 4, requires_grad=True)
    w = softmax_weights(logits)[:, None]
    out = weighted_answer_representation(w, emb)
    want = torch.stack([sum(w[b, 0, i] * emb[b, i] for i in range(4)) for b in range(2)])[:, None]
    assert torch.allclose(out, want, atol=1e-6)
    g = torch.randn_like(out)
    g1 = torch.autograd.grad((out * g).sum(), (emb, logits), retain_graph=True)
    g2 = torch.autograd.grad((want * g).sum(), (emb, logits))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-6)


def test_eq2_gumbel_softmax_with_given_noise():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    noise = torch.tensor([[0.3, -0.2, 1.5, 0.0]])
    tau = 2.0
    log_p = [v - math.log(sum(math.exp(x) for x in logits[0].tolist())) for v in logits[0].tolist()]
    z = [(lp + g) / tau for lp, g in zip(log_p, noise[0].tolist())]
    want = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
    assert gumbel_softmax_weights(logits, tau, noise=noise)[0].tolist() == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError):
        gumbel_softmax_weights(logits, 0.0)


@pytest.mark.parametrize(
    "epoch,anneal,want",
    [(0, 10, 5.0), (2.5, 10, 4.0), (5, 10, 3.0), (10, 10, 1.0), (15, 10, 1.0), (1, 2, 3.0), (3, 2, 1.0)],
)
def test_gumbel_temperature_schedule(epoch, anneal, want):
    assert gumbel_temperature(epoch, 5.0, 1.0, anneal) == pytest.approx(want)


def test_rationale_nll_per_answer():
    logits = torch.randn(3, 4, 4)
    labels = torch.tensor([0, 3, 1])
    got = rationale_nll_per_answer(logits, labels)
    for b in range(3):
        for i in range(4):
            assert got[b, i].item() == pytest.approx(-torch.log_softmax(logits[b, i], 0)[labels[b]].item(), rel=1e-6)


def test_rl_samples_score_their_own_example():
    # item 0's rationale losses are small, item 1's huge: a B x B mix-up would leak item 1's losses into item 0
    answer_logits = torch.tensor([[0.5, 0.1, -0.2, 0.0], [0.0, 0.3, 0.2, -0.1]], requires_grad=True)
    nll = torch.tensor([[0.1, 0.2, 0.3, 0.4], [10.0, 20.0, 30.0, 40.0]], requires_grad=True)
    samples = torch.tensor([[0, 0, 3, 1], [2, 2, 1, 0]])
    loss, expected = rl_expectation_loss(answer_logits, nll, samples)
    # independent loop: sample (b, n) reads nll[b, samples[b, n]]
    log_p = torch.log_softmax(answer_logits, -1)
    ref = 0.0
    for b in range(2):
        for n in range(4):
            a = samples[b, n].item()
            ref = ref + nll[b, a] + nll[b, a].detach() * log_p[b, a]
    ref = ref / 8
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert expected.item() == pytest.approx((0.1 + 0.1 + 0.4 + 0.2 + 30 + 30 + 20 + 10) / 8, rel=1e-6)
    g = torch.autograd.grad(loss, (answer_logits, nll), retain_graph=True)
    g_ref = torch.autograd.grad(ref, (answer_logits, nll))
    assert torch.allclose(g[0], g_ref[0], atol=1e-6) and torch.allclose(g[1], g_ref[1], atol=1e-6)
    # item 0's policy gradient depends on item 0's losses only
    nll2 = nll.detach().clone()
    nll2[1] *= 7
    g0_changed = torch.autograd.grad(rl_expectation_loss(answer_logits, nll2, samples)[0], answer_logits)[0]
    assert torch.allclose(g0_changed[0], g[0][0], atol=1e-7)
    assert not torch.allclose(g0_changed[1], g[0][1])
    # the gradient w.r.t. nll of item b is its sample frequency / (B N): zero for unsampled answers
    assert g[1][0].tolist() == pytest.approx([2 / 8, 1 / 8, 0.0, 1 / 8])


def test_rl_estimator_is_unbiased_for_the_expected_loss():
    torch.manual_seed(0)
    logits = torch.tensor([[1.0, 0.0, -0.5, 0.2]], requires_grad=True)
    nll = torch.tensor([[1.0, 3.0, 0.5, 2.0]])
    samples = torch.multinomial(torch.softmax(logits.detach(), -1), 200000, replacement=True)
    loss, _ = rl_expectation_loss(logits, nll, samples)
    (g,) = torch.autograd.grad(loss, logits)
    exact = (torch.softmax(logits, -1) * nll).sum()
    (g_exact,) = torch.autograd.grad(exact, logits)
    assert torch.allclose(g, g_exact, atol=0.02)


def test_direct16_value_and_gradient_match_the_released_two_loss_objective():
    # released (hammad001/r2c, direct-cross-entropy): 4/20 CE over the 4 answers + 16/20 CE over the 16 concatenated
    # answer-conditioned rationale logits (rationale j under answer i at index 4i + j), label 4a + r
    torch.manual_seed(1)
    za = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    zr = torch.randn(3, 4, 4, dtype=torch.float64, requires_grad=True)
    a, r = [2, 0, 1], [1, 3, -100]
    labels = torch.tensor([4 * a[0] + r[0], 4 * a[1] + r[1], -100])
    loss = joint_objective(multiple_choice_loss(za, torch.tensor(a)), direct16_loss(zr, labels), (0.2, 0.8))
    ce_a = sum(-torch.log_softmax(za[b], 0)[a[b]] for b in range(3)) / 3
    ce_16 = sum(-torch.log_softmax(torch.cat([zr[b, i] for i in range(4)]), 0)[4 * a[b] + r[b]] for b in range(2)) / 2
    ref = 0.2 * ce_a + 0.8 * ce_16
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)
    g = torch.autograd.grad(loss, (za, zr), retain_graph=True)
    g_ref = torch.autograd.grad(ref, (za, zr))
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(g, g_ref))
    # the pair score is f_R's alone: the answer logits get no gradient from the 16-way term
    (g_a,) = torch.autograd.grad(direct16_loss(zr, labels), (zr,))
    assert g_a.abs().sum() > 0
    with pytest.raises(ValueError):
        direct16_loss(zr[:, :3], labels)


def test_rl_ignores_items_without_a_rationale_label():
    logits = torch.randn(2, 4, 4)
    nll = rationale_nll_per_answer(logits, torch.tensor([2, -100]))
    assert torch.all(nll[1] == 0) and torch.all(nll[0] > 0)  # not trained toward rationale 0
    answer_logits = torch.randn(2, 4, requires_grad=True)
    samples = torch.tensor([[0, 1, 2], [3, 3, 1]])
    valid = torch.tensor([True, False])
    loss, expected = rl_expectation_loss(answer_logits, nll, samples, valid=valid)
    alone, expected_alone = rl_expectation_loss(answer_logits[:1], nll[:1], samples[:1])
    assert loss.item() == pytest.approx(alone.item(), abs=1e-7) and expected.item() == pytest.approx(expected_alone.item())
    (g,) = torch.autograd.grad(loss, answer_logits)
    assert torch.all(g[1] == 0)


def test_rl_leave_one_out_baseline_value_and_gradient():
    answer_logits = torch.tensor([[0.5, 0.1, -0.2, 0.0], [0.0, 0.3, 0.2, -0.1]], dtype=torch.float64, requires_grad=True)
    nll = torch.tensor([[0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    samples = torch.tensor([[0, 0, 3, 1], [2, 2, 1, 0]])
    loss, _ = rl_expectation_loss(answer_logits, nll, samples, baseline="leave_one_out")
    log_p = torch.log_softmax(answer_logits, -1)
    ref = 0.0
    for b in range(2):
        losses = [nll[b, samples[b, n]] for n in range(4)]
        for n in range(4):
            others = sum(losses[m].item() for m in range(4) if m != n) / 3  # every sample but n itself
            ref = ref + losses[n] + (losses[n].item() - others) * log_p[b, samples[b, n]]
    ref = ref / 8
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)
    g = torch.autograd.grad(loss, (answer_logits, nll))
    g_ref = torch.autograd.grad(ref, (answer_logits, nll))
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(g, g_ref))
    with pytest.raises(ValueError, match="at least 2"):
        rl_expectation_loss(answer_logits, nll, samples[:, :1], baseline="leave_one_out")
    with pytest.raises(ValueError, match="unknown baseline"):
        rl_expectation_loss(answer_logits, nll, samples, baseline="mean")


def test_baseline75_feeds_the_right_answer_three_quarters_of_the_time():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (20000,), generator=g)
    fed = baseline75_answers(labels, 0.75, generator=g)
    right = (fed == labels).float().mean().item()
    assert right == pytest.approx(0.75, abs=0.01)
    wrong = fed[fed != labels]
    assert wrong.min() >= 0 and wrong.max() <= 3
    # the wrong answer is uniform over the other three
    offsets = ((fed - labels) % 4)[fed != labels]
    counts = torch.bincount(offsets, minlength=4)[1:].float() / len(offsets)
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.02)


def test_joint_objective_ratio():
    a, r = torch.tensor(2.0), torch.tensor(3.0)
    assert joint_objective(a, r).item() == pytest.approx(5.0)
    assert joint_objective(a, r, (1.0, 4.0)).item() == pytest.approx(14.0)
