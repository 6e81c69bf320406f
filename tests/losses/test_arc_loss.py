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
    symmetric_infonce,
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


def test_kd_r_released_value_matches_manual_computation():
    torch.manual_seed(0)
    c = torch.tensor(H_C)
    r = torch.tensor(H_R, requires_grad=True)
    pc, pr = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    t, w = 0.5, 0.7
    got = kd_rationale_loss_released(c, r, torch.tensor(Y_R), pc, pr, temperature=t, infonce_weight=w)
    # manual, item by item
    cn = [torch.nn.functional.normalize(pc(c[b]), dim=0) for b in range(2)]
    rn = [[torch.nn.functional.normalize(pr(r[b, i]), dim=0) for i in range(4)] for b in range(2)]
    ce = 0.0
    for b in range(2):
        s = torch.stack([cn[b] @ rn[b][i] for i in range(4)]) / t
        ce = ce - torch.log_softmax(s, 0)[Y_R[b]] / 2
    pos = [rn[b][Y_R[b]] for b in range(2)]
    m = torch.stack([torch.stack([cn[i] @ pos[j] for j in range(2)]) for i in range(2)]) / t
    nce_rows = -(torch.log_softmax(m, 1)[0, 0] + torch.log_softmax(m, 1)[1, 1]) / 2
    nce_cols = -(torch.log_softmax(m, 0)[0, 0] + torch.log_softmax(m, 0)[1, 1]) / 2
    want = ce + w * (nce_rows + nce_cols) / 2
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    g_got = torch.autograd.grad(got, r, retain_graph=True)[0]
    g_want = torch.autograd.grad(want, r)[0]
    assert torch.allclose(g_got, g_want, atol=1e-6)


def test_symmetric_infonce_is_low_for_matching_rows():
    a = torch.eye(3)
    assert symmetric_infonce(a, a, 0.05).item() < 1e-3
    assert symmetric_infonce(a, a.roll(1, 0), 0.05).item() > 5


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
