"""ARC losses: answering and reasoning coupled through a QR→A teacher.

"Joint Answering and Explanation for Visual Commonsense Reasoning" (ARC), section IV:
KD-A (eq. 7-9) distils the teacher's answer distribution into Q→A, KD-R (eq. 10-11)
scores the QA→R features against the teacher's fused feature (or, as released, two projected
cross entropies in both directions), eq. 12-14 combine them
with the cross entropies (eq. 5-6), and eq. 15 trains the teacher f_C.

All functions are pure tensor functions; labels of -100 are ignored where a label is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .multiple_choice import multiple_choice_loss


def kd_answer_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
) -> torch.Tensor:
    """KD-A, ARC eq. 7-9: ``D_KL(p^C || p^A)`` with ``p = softmax(logits / T)``, averaged over the batch.

    ``student_logits`` are f_A's answer logits ``[B, 4]`` (eq. 8), ``teacher_logits`` the
    frozen QR→A teacher's ``[B, 4]`` (eq. 7; no gradient flows into them). With
    ``scale_by_t2`` the divergence is multiplied by ``T**2`` as in the released code
    (Hinton et al.'s gradient-scale correction; the released setting is T=20).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    return kl * temperature**2 if scale_by_t2 else kl


def kd_rationale_scores(teacher_feature: torch.Tensor, rationale_features: torch.Tensor) -> torch.Tensor:
    """ARC eq. 10: ``s_i = h^C · h^R_i`` for teacher features ``[B, H]`` and rationale features ``[B, C, H]``."""
    if teacher_feature.dim() != 2 or rationale_features.dim() != 3:
        raise ValueError(
            f"expected teacher_feature [B, H] and rationale_features [B, C, H], got {tuple(teacher_feature.shape)} "
            f"and {tuple(rationale_features.shape)}"
        )
    if teacher_feature.shape[-1] != rationale_features.shape[-1]:
        raise ValueError(
            f"KD-R needs f_C and f_R features of one width (eq. 10 is a dot product): {teacher_feature.shape[-1]} vs "
            f"{rationale_features.shape[-1]}; use the released variant's projections otherwise"
        )
    return torch.einsum("bh,bch->bc", teacher_feature.detach().float(), rationale_features.float())


def select_choice(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``features[b, labels[b]]`` for ``[B, C, H]`` features (a label of -100 reads choice 0; mask it yourself)."""
    return features[torch.arange(features.shape[0], device=features.device), labels.clamp(min=0)]


def kd_rationale_loss(teacher_feature: torch.Tensor, rationale_features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KD-R, ARC eq. 10-11 (the paper's version): cross entropy of ``s_i = h^C · h^R_i`` against the rationale label.

    ``teacher_feature`` ``[B, H]`` is f_C's fused feature for (Q, R, I, A_gt) (:func:`select_choice` of f_C's
    four answer features at the answer label); ``rationale_features`` ``[B, 4, H]`` are f_R's fused
    features of the four rationale choices.
    """
    return multiple_choice_loss(kd_rationale_scores(teacher_feature, rationale_features), labels)


def kd_rationale_loss_released(
    teacher_features: torch.Tensor,
    answer_labels: torch.Tensor,
    rationale_features: torch.Tensor,
    rationale_labels: torch.Tensor,
    teacher_projection: torch.nn.Module | None = None,
    student_projection: torch.nn.Module | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """KD-R as the released ARC code trains it (SDLZY/ARC ``r2c_kd/models/kd``, ``InfoNCEEmbLoss_2``); an option,
    the paper's eq. 10-11 is :func:`kd_rationale_loss`.

    Each side has its own linear projection followed by L2 normalisation: ``c_i = n(P_C h^C_i)`` for
    f_C's features of the four answers ``[B, 4, H_C]`` (the teacher is frozen, ``P_C`` trains) and
    ``r_j = n(P_R h^R_j)`` for f_R's features of the four rationales ``[B, 4, H_R]``. Two cross entropies,
    each scored against the *detached* right choice of the other side, at ``temperature`` (released: 1):

    * answer direction: ``CE([c_i · sg(r_{y_R})]_i / t, y_A)`` (trains ``P_C`` only);
    * rationale direction: ``CE([r_j · sg(c_{y_A})]_j / t, y_R)`` (trains f_R and ``P_R``).

    Returns ``(answer term + rationale term, answer term, rationale term)``, each averaged over the items
    that have both labels (an item with a label of -100 has no right choice on one side).
    """
    if teacher_features.dim() != 3 or rationale_features.dim() != 3 or teacher_features.shape[:2] != rationale_features.shape[:2]:
        raise ValueError(
            f"released KD-R needs f_C's features of every answer [B, 4, H] and f_R's of every rationale [B, 4, H], got "
            f"{tuple(teacher_features.shape)} and {tuple(rationale_features.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    c = teacher_features.detach().float()
    r = rationale_features.float()
    if teacher_projection is not None:
        c = teacher_projection(c)
    if student_projection is not None:
        r = student_projection(r)
    c = F.normalize(c, dim=-1)
    r = F.normalize(r, dim=-1)
    both = (answer_labels != -100) & (rationale_labels != -100)
    ignore = torch.full_like(answer_labels, -100)
    y_a, y_r = torch.where(both, answer_labels, ignore), torch.where(both, rationale_labels, ignore)
    r_right = select_choice(r, y_r).detach()
    c_right = select_choice(c, y_a).detach()
    answer_term = multiple_choice_loss(torch.einsum("bch,bh->bc", c, r_right) / temperature, y_a)
    rationale_term = multiple_choice_loss(torch.einsum("bch,bh->bc", r, c_right) / temperature, y_r)
    return answer_term + rationale_term, answer_term, rationale_term


def arc_objective(
    ce_answer: torch.Tensor,
    kd_answer: torch.Tensor,
    ce_rationale: torch.Tensor,
    kd_rationale: torch.Tensor,
    alpha: float = 0.1,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ARC eq. 12-14: ``L_Q→A = α KD-A + (1-α) CE_A``, ``L_QA→R = β KD-R + (1-β) CE_R``, ``L = L_Q→A + L_QA→R``.

    Returns ``(L, L_Q→A, L_QA→R)``. The released weights are α = β = 0.1.
    """
    if not (0.0 <= alpha <= 1.0 and 0.0 <= beta <= 1.0):
        raise ValueError(f"alpha and beta must lie in [0, 1], got {alpha}, {beta}")
    l_qa = alpha * kd_answer + (1.0 - alpha) * ce_answer
    l_qar = beta * kd_rationale + (1.0 - beta) * ce_rationale
    return l_qa + l_qar, l_qa, l_qar


def teacher_loss(teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ARC eq. 15: the QR→A teacher's cross entropy over the answers (stage 1 of Algorithm 1)."""
    return multiple_choice_loss(teacher_logits, labels)
