"""LSKD / BLIP-2 stage-1 losses against independent re-computations (values and gradients)."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_vcr.losses import lskd as lskd_losses
from hf_vcr.losses.lskd import (
    critic_label_from_verdicts,
    critic_loss,
    gather_with_grad,
    itc_loss,
    itg_attention_mask,
    itg_loss,
    itg_target_count,
    itm_loss,
    sample_hard_negatives,
)

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine


def _feats(seed=0, b=4, q=3, d=5):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(b, q, d, generator=g), dim=-1).requires_grad_()
    txt = F.normalize(torch.randn(b, d, generator=g), dim=-1).requires_grad_()
    return img, txt


def _itc_reference(img, txt, tau, eps):
    """Loop form of BLIP-2 ITC: s_ij = max_q <z_iq, t_j> / tau; symmetric CE with label smoothing eps."""
    b = img.shape[0]
    total = 0.0
    for i in range(b):
        s_i2t = [max(float(img[i, q] @ txt[j]) for q in range(img.shape[1])) / tau for j in range(b)]
        s_t2i = [max(float(img[j, q] @ txt[i]) for q in range(img.shape[1])) / tau for j in range(b)]
        for s in (s_i2t, s_t2i):
            lse = math.log(sum(math.exp(v) for v in s))
            logp = [v - lse for v in s]
            total += 0.5 * (-(1 - eps) * logp[i] - eps / b * sum(logp))
    return total / b


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_itc_value_matches_equation(eps):
    img, txt = _feats()
    tau = torch.tensor(0.07)
    got = itc_loss(img, txt, tau, label_smoothing=eps)
    assert got.item() == pytest.approx(_itc_reference(img.detach(), txt.detach(), 0.07, eps), rel=1e-5)


def _loop_sims(img_rows, txt_cols):
    """s[i, j] = max_q <img_rows[i, q], txt_cols[j]> by explicit loops (no einsum)."""
    b = img_rows.shape[0]
    return torch.stack([torch.stack([(img_rows[i] @ txt_cols[j]).max() for j in range(b)]) for i in range(b)])


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("with_grad", [False, True])
def test_itc_gradients_match_autograd_of_explicit_formula(with_grad, eps):
    """gather_with_grad=True: every similarity trains both sides; False (LAVIS): the gathered side is a no-grad
    copy, so s(I_i, T_.) trains only image features and s(T_i, I_.) only text features."""
    img, txt = _feats(1)
    tau = torch.tensor(0.1, requires_grad=True)
    itc_loss(img, txt, tau, label_smoothing=eps, gather_with_grad=with_grad).backward()
    g_img, g_txt, g_tau = img.grad.clone(), txt.grad.clone(), tau.grad.clone()
    img2, txt2 = img.detach().clone().requires_grad_(), txt.detach().clone().requires_grad_()
    tau2 = torch.tensor(0.1, requires_grad=True)
    other_img = img2 if with_grad else img2.detach()
    other_txt = txt2 if with_grad else txt2.detach()
    s_i2t = _loop_sims(img2, other_txt) / tau2
    s_t2i = _loop_sims(other_img, txt2).t() / tau2
    target = torch.arange(4)
    ref = 0.5 * (F.cross_entropy(s_i2t, target, label_smoothing=eps) + F.cross_entropy(s_t2i, target, label_smoothing=eps))
    ref.backward()
    assert torch.allclose(g_img, img2.grad, atol=1e-6)
    assert torch.allclose(g_txt, txt2.grad, atol=1e-6)
    assert torch.allclose(g_tau, tau2.grad, atol=1e-6)
    assert g_tau.abs() > 0  # the temperature is learnable
    if not with_grad:  # the two variants really differ
        img3, txt3 = img.detach().clone().requires_grad_(), txt.detach().clone().requires_grad_()
        itc_loss(img3, txt3, torch.tensor(0.1), label_smoothing=eps, gather_with_grad=True).backward()
        assert not torch.allclose(img3.grad, g_img, atol=1e-4)


def test_itc_group_ids_are_positives_with_label_smoothing():
    """BLIP-2 / LAVIS with image ids: rows of one group are positives; target (1-eps) pos/n_pos + eps/N; finite."""
    img, txt = _feats(2)
    tau = torch.tensor(0.5, requires_grad=True)
    groups = torch.tensor([0, 0, 1, 2])
    got = itc_loss(img, txt, tau, label_smoothing=0.1, group_ids=groups)
    assert torch.isfinite(got)
    got.backward()
    g_img, g_txt = img.grad.clone(), txt.grad.clone()
    img2, txt2 = img.detach().clone().requires_grad_(), txt.detach().clone().requires_grad_()
    s_i2t = _loop_sims(img2, txt2.detach()) / 0.5
    s_t2i = _loop_sims(img2.detach(), txt2).t() / 0.5
    targets = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]) * 0.9 + 0.1 / 4
    ref = 0.5 * sum(-(targets[i] * torch.log_softmax(s[i], 0)).sum() for s in (s_i2t, s_t2i) for i in range(4)) / 4
    assert got.item() == pytest.approx(ref.item(), abs=1e-6)
    ref.backward()
    assert torch.allclose(g_img, img2.grad, atol=1e-6) and torch.allclose(g_txt, txt2.grad, atol=1e-6)
    # distinct ids: the same as plain label smoothing
    img.grad = None
    a = itc_loss(img, txt, tau, label_smoothing=0.1, group_ids=torch.arange(4))
    b = itc_loss(img, txt, tau, label_smoothing=0.1)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


class _FakeWorld:
    """Patches the collectives as a 2-process world seen from ``rank`` (open_clip's pattern): ``all_gather`` fills
    in the peer's tensor (from ``peer``, keyed by the tensor's number of dims), ``all_reduce`` adds the gradient the
    peer's loss sends to every rank's slice (from ``peer_grads``, keyed likewise)."""

    def __init__(self, monkeypatch, rank, peer, peer_grads=None):
        self.rank, self.peer, self.peer_grads = rank, peer, peer_grads or {}
        monkeypatch.setattr(lskd_losses, "_dist_ready", lambda: True)
        monkeypatch.setattr(lskd_losses.dist, "get_world_size", lambda: 2)
        monkeypatch.setattr(lskd_losses.dist, "get_rank", lambda: self.rank)
        monkeypatch.setattr(lskd_losses.dist, "all_gather", self.all_gather)
        monkeypatch.setattr(lskd_losses.dist, "all_reduce", self.all_reduce)

    def all_gather(self, out, tensor):
        out[self.rank].copy_(tensor)
        out[1 - self.rank].copy_(self.peer[tensor.dim()])

    def all_reduce(self, t):
        t.add_(self.peer_grads[t.dim()])


def _split_loss(img, txt, tau, eps, with_grad, rows):
    """The loss one process computes for its ``rows`` against the whole batch (independent loop form)."""
    other_img = img if with_grad else img.detach()
    other_txt = txt if with_grad else txt.detach()
    s_i2t = _loop_sims(img, other_txt)[rows] / tau
    s_t2i = _loop_sims(other_img, txt).t()[rows] / tau
    t = torch.arange(4)[rows]
    return 0.5 * (F.cross_entropy(s_i2t, t, label_smoothing=eps) + F.cross_entropy(s_t2i, t, label_smoothing=eps))


@pytest.mark.parametrize("with_grad", [False, True])
def test_itc_gather_two_processes_equal_one(monkeypatch, with_grad):
    """Two patched processes with 2 rows each. Each computes its local loss; the mean of the losses equals the
    1-process loss on the 4 rows, and each process's gradient on its rows, halved (DDP averages), equals the
    1-process gradient there. With LAVIS's no-grad gather (default) nothing is reduced in backward; with
    ``gather_with_grad`` the peer's loss also trains this process's features, through the all_reduce."""
    img, txt = _feats(5)
    img, txt = img.detach(), txt.detach()
    tau, eps = 0.2, 0.1
    whole_img, whole_txt = img.clone().requires_grad_(), txt.clone().requires_grad_()
    whole = _split_loss(whole_img, whole_txt, tau, eps, with_grad, slice(0, 4))
    whole.backward()
    losses, g_img, g_txt = [], [], []
    for rank in (0, 1):
        rows, peer_rows = slice(2 * rank, 2 * rank + 2), slice(2 - 2 * rank, 4 - 2 * rank)
        peer_grads = {}
        if with_grad:  # what the peer's loss sends to each rank's slice: [2 ranks, 2 rows, ...]
            pi, pt = img.clone().requires_grad_(), txt.clone().requires_grad_()
            _split_loss(pi, pt, tau, eps, True, peer_rows).backward()
            peer_grads = {4: pi.grad.reshape(2, 2, *img.shape[1:]), 3: pt.grad.reshape(2, 2, txt.shape[1])}
        _FakeWorld(monkeypatch, rank, {3: img[peer_rows], 2: txt[peer_rows]}, peer_grads)
        li, lt = img[rows].clone().requires_grad_(), txt[rows].clone().requires_grad_()
        loss = itc_loss(li, lt, torch.tensor(tau), label_smoothing=eps, gather_with_grad=with_grad)
        loss.backward()
        losses.append(loss.item())
        g_img.append(li.grad)
        g_txt.append(lt.grad)
    assert sum(losses) / 2 == pytest.approx(whole.item(), abs=1e-6)
    assert torch.allclose(torch.cat(g_img) / 2, whole_img.grad, atol=1e-6)
    assert torch.allclose(torch.cat(g_txt) / 2, whole_txt.grad, atol=1e-6)


def test_gather_with_grad_is_identity_in_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x


def test_hard_negatives_follow_similarity_softmax_and_exclude_positive():
    b, reps = 3, 1500
    sim = torch.tensor([[5.0, 4.0, -5.0], [0.0, 9.0, 0.0], [3.0, -2.0, 1.0]])
    # many independent draws at once: a block-diagonal batch of copies (other blocks get ~zero probability)
    big = torch.full((b * reps, b * reps), -1e4)
    for r in range(reps):
        big[r * b : (r + 1) * b, r * b : (r + 1) * b] = sim
    g = torch.Generator().manual_seed(0)
    neg_img, neg_txt = sample_hard_negatives(big, big.t().contiguous(), generator=g)
    rows = torch.arange(b * reps)
    assert (neg_img != rows).all() and (neg_txt != rows).all()
    assert (neg_txt // b == rows // b).all()  # stayed inside its own copy
    counts = torch.zeros(b, b)
    counts.index_put_((rows % b, neg_txt % b), torch.ones(b * reps), accumulate=True)
    freq = counts / reps
    expected = torch.softmax(sim, 1).masked_fill(torch.eye(b, dtype=torch.bool), 0)
    expected = expected / expected.sum(1, keepdim=True)
    assert torch.allclose(freq, expected, atol=0.045)


def test_hard_negatives_with_offset_and_groups():
    sim = torch.zeros(2, 6)
    g = torch.Generator().manual_seed(1)
    groups, all_groups = torch.tensor([7, 8]), torch.tensor([1, 2, 7, 8, 7, 3])
    for _ in range(200):
        neg_img, neg_txt = sample_hard_negatives(sim, sim, offset=2, group_ids=groups, all_group_ids=all_groups, generator=g)
        assert neg_img[0] not in (2, 4) and neg_img[1] != 3


def test_itm_loss_is_cross_entropy():
    logits = torch.tensor([[0.2, 1.0], [2.0, -1.0], [0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([1, 0, 0])
    got = itm_loss(logits, labels)
    p = torch.softmax(logits.detach(), -1)
    ref = -(p[0, 1].log() + p[1, 0].log() + p[2, 0].log()) / 3
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    got.backward()
    grad_ref = (p - F.one_hot(labels, 2)) / 3
    assert torch.allclose(logits.grad, grad_ref, atol=1e-6)


def test_itg_mask_queries_see_queries_text_sees_queries_and_past():
    text_mask = torch.tensor([[1, 1, 1, 0]])
    m = itg_attention_mask(2, text_mask)
    allowed = (m[0, 0] == 0)
    expect = torch.tensor([
        # q0 q1 t0 t1 t2 t3
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 0],  # padding is never attended
    ], dtype=torch.bool)
    assert torch.equal(allowed, expect)


def test_itg_loss_shifts_and_ignores_padding():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 7, generator=g, requires_grad=True)
    ids = torch.tensor([[1, 3, 4, 5], [1, 6, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    got = itg_loss(logits, ids, mask, label_smoothing=0.0)
    lp = torch.log_softmax(logits.detach(), -1)
    terms = [lp[0, 0, 3], lp[0, 1, 4], lp[0, 2, 5], lp[1, 0, 6]]
    assert got.item() == pytest.approx(-sum(t.item() for t in terms) / 4, rel=1e-6)
    got.backward()
    assert logits.grad[1, 1:].abs().sum() == 0  # positions predicting padding get no gradient
    assert logits.grad[0, 3].abs().sum() == 0  # the last position predicts nothing


def test_itg_loss_with_the_global_token_count_splits_over_processes():
    """Two "processes" with 3 and 1 predicted tokens: each normalised by the whole batch's count x 2, their
    average (what DDP does to gradients) is the 1-process token mean; per-process means would not be."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 4, 7, generator=g, requires_grad=True)
    ids = torch.tensor([[1, 3, 4, 5], [1, 6, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    whole = itg_loss(logits, ids, mask)
    (grad_whole,) = torch.autograd.grad(whole, logits)
    assert itg_target_count(ids, mask).item() == 4
    n = itg_target_count(ids, mask).float() / 2
    halves = [itg_loss(logits[i : i + 1], ids[i : i + 1], mask[i : i + 1], num_targets=n) for i in (0, 1)]
    split = (halves[0] + halves[1]) / 2
    (grad_split,) = torch.autograd.grad(split, logits)
    assert split.item() == pytest.approx(whole.item(), rel=1e-6)
    assert torch.allclose(grad_split, grad_whole, atol=1e-7)
    per_process_means = (itg_loss(logits[:1], ids[:1], mask[:1]) + itg_loss(logits[1:], ids[1:], mask[1:])) / 2
    assert abs(per_process_means.item() - whole.item()) > 1e-3


def test_critic_loss_regresses_rationale_head_on_rationale_score():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([1, 0])
    qa_pred = torch.tensor([0.9, 0.2], requires_grad=True)
    r_pred = torch.tensor([0.5, 0.1], requires_grad=True)
    qa_t, r_t = torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.0])
    out = critic_loss(logits, labels, qa_pred, qa_t, r_pred, r_t, weights=(1.0, 2.0, 3.0))
    ce = F.cross_entropy(logits.detach(), labels)
    qa = ((qa_pred.detach() - qa_t) ** 2).mean()
    r = ((r_pred.detach() - r_t) ** 2).mean()  # the released code would use qa_t here
    assert out["loss"].item() == pytest.approx((ce + 2 * qa + 3 * r).item(), rel=1e-6)
    out["loss"].backward()
    assert torch.allclose(r_pred.grad, 3 * 2 * (r_pred.detach() - r_t) / 2)
    assert torch.allclose(qa_pred.grad, 2 * 2 * (qa_pred.detach() - qa_t) / 2)


def test_critic_loss_released_weights_value_and_gradients():
    """Default weights are the released 1 / 0.5 / 0.5 (blip2_critic.py); independent re-computation."""
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(5, 2, generator=g, requires_grad=True)
    labels = torch.tensor([1, 0, 0, 1, 1])
    qa_pred, r_pred = torch.rand(5, generator=g, requires_grad=True), torch.rand(5, generator=g, requires_grad=True)
    qa_t, r_t = torch.rand(5, generator=g), torch.rand(5, generator=g)
    out = critic_loss(logits, labels, qa_pred, qa_t, r_pred, r_t)
    out["loss"].backward()
    lg, qp, rp = (t.detach().clone().requires_grad_() for t in (logits, qa_pred, r_pred))
    logp = lg - lg.exp().sum(1, keepdim=True).log()
    ref = -logp[torch.arange(5), labels].mean() + 0.5 * ((qp - qa_t) ** 2).mean() + 0.5 * ((rp - r_t) ** 2).mean()
    ref.backward()
    assert out["loss"].item() == pytest.approx(ref.item(), abs=1e-6)
    for a, b in ((logits, lg), (qa_pred, qp), (r_pred, rp)):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_critic_label_any_reject_rejects():
    assert critic_label_from_verdicts(["accept", "accept"]) == 1
    assert critic_label_from_verdicts(["accept", "reject", "accept"]) == 0
    assert critic_label_from_verdicts(["maybe", "Accept"]) == 1
    assert critic_label_from_verdicts("reject") == 0 and critic_label_from_verdicts("accept") == 1
    assert critic_label_from_verdicts(1) == 1 and critic_label_from_verdicts(0) == 0


@pytest.mark.parametrize("bad", [[], 5, -3, "yes", ["accept", "nope"], [1], None, {"a": 1}, 0.5])
def test_critic_label_unreadable_is_an_error(bad):
    with pytest.raises(ValueError, match="label"):
        critic_label_from_verdicts(bad)
