"""ARC losses (eq. 7-15) against independent re-computations on fixed tensors: values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from hf_vcr.losses.arc import (
    arc_objective,
    kd_answer_loss,
    kd_rationale_loss,
    kd_rationale_loss_released,
    select_choice,
    teacher_loss,
)

Z_A = [[1.0, -0.5, 0.3, 2.0], [0.2, 0.1, -1.0, 0.5]]
Z_C = [[3.0, 0.0, -1.0, 0.5], [-0.3, 2.5, 0.4, 0.0]]


def _softmax(row, t=1.0):
    e = [math.exp(v / t) for v in row]
    s = sum(e)
    return [x / s for x in e]


def _kl_reference(z_a, z_c, t):
    total = 0.0
    for ra, rc in zip(z_a, z_c):
        pa, pc = _softmax(ra, t), _softmax(rc, t)
        total += sum(c * (math.log(c) - math.log(a)) for a, c in zip(pa, pc))
    return total / len(z_a)


@pytest.mark.parametrize("t,scale", [(1.0, False), (4.0, False), (20.0, True)])
def test_kd_a_value_matches_eq_9(t, scale):
    z_a = torch.tensor(Z_A, requires_grad=True)
    got = kd_answer_loss(z_a, torch.tensor(Z_C), temperature=t, scale_by_t2=scale)
    want = _kl_reference(Z_A, Z_C, t) * (t * t if scale else 1.0)
    assert got.item() == pytest.approx(want, rel=1e-4, abs=1e-7)  # float32 at T=20


def test_kd_a_gradient_is_p_a_minus_p_c_over_t():
    # d KL(p_C || p_A) / d z_A = (p_A - p_C) / T per item, divided by B for the batch mean
    t = 3.0
    z_a = torch.tensor(Z_A, requires_grad=True)
    z_c = torch.tensor(Z_C, requires_grad=True)
    kd_answer_loss(z_a, z_c, temperature=t).backward()
    for b in range(2):
        pa, pc = _softmax(Z_A[b], t), _softmax(Z_C[b], t)
        want = [(a - c) / t / 2 for a, c in zip(pa, pc)]
        assert z_a.grad[b].tolist() == pytest.approx(want, abs=1e-6)
    assert z_c.grad is None or torch.all(z_c.grad == 0)  # the teacher is frozen


def test_kd_a_is_zero_when_student_matches_teacher():
    z = torch.tensor(Z_C)
    assert kd_answer_loss(z.clone(), z, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


H_C = [[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]]
H_R = [
    [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 2.0, 0.5], [0.3, 0.3, 0.3]],
    [[0.0, 1.0, 0.0], [2.0, 0.0, 1.0], [1.0, -2.0, 0.0], [0.0, 0.0, 0.0]],
]
Y_R = [1, 2]


def test_kd_r_value_and_gradient_match_eq_10_11():
    h_r = torch.tensor(H_R, requires_grad=True)
    loss = kd_rationale_loss(torch.tensor(H_C), h_r, torch.tensor(Y_R))
    want, grads = 0.0, []
    for b in range(2):
        s = [sum(c * r for c, r in zip(H_C[b], H_R[b][i])) for i in range(4)]  # eq. 10
        p = _softmax(s)
        want += -math.log(p[Y_R[b]]) / 2  # eq. 11
        # d/d h_R_i = (p_i - y_i) h_C / B
        grads.append([[(p[i] - (i == Y_R[b])) * c / 2 for c in H_C[b]] for i in range(4)])
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert torch.allclose(h_r.grad, torch.tensor(grads), atol=1e-6)


def test_kd_r_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="one width"):
        kd_rationale_loss(torch.zeros(2, 3), torch.zeros(2, 4, 5), torch.tensor([0, 1]))


H_C4 = [  # f_C's features of the four answers, [B=2, 4, 3]
    [[1.0, 0.0, 2.0], [0.2, 0.4, -1.0], [0.0, 1.5, 0.5], [-0.7, 0.1, 0.3]],
    [[0.5, -1.0, 0.0], [1.0, 1.0, 1.0], [0.3, -0.2, 0.9], [2.0, 0.0, -0.5]],
]
Y_A = [0, 3]


def _released_reference(h_c, y_a, h_r, y_r, w_c, b_c, w_r, b_r, t):
    """SDLZY/ARC InfoNCEEmbLoss_2, written item by item: Linear + x/|x| per side, then
    CE(c_i . sg(r_{y_R}) / t, y_A) + CE(r_j . sg(c_{y_A}) / t, y_R), each a batch mean."""
    def embed(x, w, b):
        y = x @ w.t() + b
        return y / y.pow(2).sum().sqrt()

    answer_term, rationale_term = 0.0, 0.0
    n = len(y_a)
    for k in range(n):
        c = [embed(h_c[k, i], w_c, b_c) for i in range(4)]
        r = [embed(h_r[k, j], w_r, b_r) for j in range(4)]
        r_pos, c_pos = r[y_r[k]].detach(), c[y_a[k]].detach()
        s_ans = torch.stack([(c[i] * r_pos).sum() for i in range(4)]) / t
        s_rat = torch.stack([(r[j] * c_pos).sum() for j in range(4)]) / t
        answer_term = answer_term - (s_ans[y_a[k]] - torch.logsumexp(s_ans, 0)) / n
        rationale_term = rationale_term - (s_rat[y_r[k]] - torch.logsumexp(s_rat, 0)) / n
    return answer_term + rationale_term, answer_term, rationale_term


@pytest.mark.parametrize("t", [1.0, 0.3])
def test_kd_r_released_value_and_gradients_match_the_released_formula(t):
    torch.manual_seed(0)
    pc, pr = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    h_c = torch.tensor(H_C4, dtype=torch.float64)
    h_r = torch.tensor(H_R, dtype=torch.float64, requires_grad=True)
    got, got_a, got_r = kd_rationale_loss_released(h_c, torch.tensor(Y_A), h_r, torch.tensor(Y_R), pc.float(), pr.float(), t)
    # the reference runs in float64 on its own copies of the parameters
    wc, bc = pc.weight.detach().double().requires_grad_(), pc.bias.detach().double().requires_grad_()
    wr, br = pr.weight.detach().double().requires_grad_(), pr.bias.detach().double().requires_grad_()
    h_r64 = h_r.detach().clone().requires_grad_()
    want, want_a, want_r = _released_reference(h_c, Y_A, h_r64, Y_R, wc, bc, wr, br, t)
    for g, w in ((got, want), (got_a, want_a), (got_r, want_r)):
        assert g.item() == pytest.approx(w.item(), abs=1e-6)
    got.backward()
    want.backward()
    assert torch.allclose(h_r.grad, h_r64.grad, atol=1e-6)
    assert torch.allclose(pc.weight.grad.double(), wc.grad, atol=1e-6) and torch.allclose(pc.bias.grad.double(), bc.grad, atol=1e-6)
    assert torch.allclose(pr.weight.grad.double(), wr.grad, atol=1e-6) and torch.allclose(pr.bias.grad.double(), br.grad, atol=1e-6)


def test_kd_r_released_detaches_where_the_released_code_does():
    torch.manual_seed(1)
    pc, pr = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    h_c = torch.tensor(H_C4, requires_grad=True)
    h_r = torch.tensor(H_R, requires_grad=True)
    _, answer_term, rationale_term = kd_rationale_loss_released(h_c, torch.tensor(Y_A), h_r, torch.tensor(Y_R), pc, pr)
    answer_term.backward(retain_graph=True)
    # answer direction: only the teacher projection learns (f_R's right rationale is detached, f_C is frozen)
    assert pc.weight.grad.abs().sum() > 0 and pr.weight.grad is None and h_r.grad is None and h_c.grad is None
    pc.zero_grad()
    rationale_term.backward()
    # rationale direction: f_R and its projection learn, the teacher side is detached
    assert pr.weight.grad.abs().sum() > 0 and h_r.grad.abs().sum() > 0 and pc.weight.grad is None


def test_kd_r_released_ignores_items_without_both_labels():
    h_c, h_r = torch.tensor(H_C4), torch.tensor(H_R)
    full, _, _ = kd_rationale_loss_released(h_c[:1], torch.tensor(Y_A[:1]), h_r[:1], torch.tensor(Y_R[:1]))
    masked, _, _ = kd_rationale_loss_released(h_c, torch.tensor([Y_A[0], -100]), h_r, torch.tensor(Y_R))
    assert masked.item() == pytest.approx(full.item(), abs=1e-6)
    none, _, _ = kd_rationale_loss_released(h_c, torch.tensor([-100, -100]), h_r, torch.tensor(Y_R))
    assert none.item() == 0.0


def test_kd_r_released_needs_every_answers_teacher_feature():
    with pytest.raises(ValueError, match="every answer"):
        kd_rationale_loss_released(torch.zeros(2, 3), torch.tensor(Y_A), torch.zeros(2, 4, 3), torch.tensor(Y_R))


def test_select_choice_reads_the_labelled_row():
    h = torch.tensor(H_C4)
    assert torch.equal(select_choice(h, torch.tensor(Y_A)), torch.stack([h[0, 0], h[1, 3]]))


def test_arc_objective_eq_12_to_14():
    ce_a, kd_a, ce_r, kd_r = (torch.tensor(v, requires_grad=True) for v in (1.2, 0.4, 0.9, 2.0))
    loss, l_qa, l_qar = arc_objective(ce_a, kd_a, ce_r, kd_r, alpha=0.1, beta=0.3)
    assert l_qa.item() == pytest.approx(0.1 * 0.4 + 0.9 * 1.2)
    assert l_qar.item() == pytest.approx(0.3 * 2.0 + 0.7 * 0.9)
    assert loss.item() == pytest.approx(l_qa.item() + l_qar.item())
    loss.backward()
    assert [ce_a.grad.item(), kd_a.grad.item(), ce_r.grad.item(), kd_r.grad.item()] == pytest.approx([0.9, 0.1, 0.7, 0.3])
    with pytest.raises(ValueError):
        arc_objective(ce_a, kd_a, ce_r, kd_r, alpha=1.5)


def test_teacher_loss_eq_15():
    z = torch.tensor(Z_C, requires_grad=True)
    loss = teacher_loss(z, torch.tensor([0, 1]))
    want = -(math.log(_softmax(Z_C[0])[0]) + math.log(_softmax(Z_C[1])[1])) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    p0 = _softmax(Z_C[0])
    assert z.grad[0].tolist() == pytest.approx([(p0[i] - (i == 0)) / 2 for i in range(4)], abs=1e-6)
