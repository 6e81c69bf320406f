"""SOrT losses: Grad-CAM vectors, the contrastive gradient loss and the total loss.

Dharur, Tendulkar, Batra, Parikh, Selvaraju. "SOrT-ing VQA Models: Contrastive Gradient
Learning for Improved Consistency" (NAACL 2021).

Pure tensor functions. A SOrT batch is a flat batch of ``Q`` questions: every
<image, reasoning question> item contributes its reasoning question (role 0), its
sub-questions (role 1) and its irrelevant questions (role 2); ``item_index[q]`` names the item
of question ``q``. Each item has exactly one reasoning question.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "ROLE_REASONING",
    "ROLE_SUB",
    "ROLE_IRRELEVANT",
    "SORT_MODES",
    "ground_truth_scores",
    "gradcam_vectors",
    "safe_cosine",
    "released_cosine",
    "reasoning_similarities",
    "contrastive_gradient_loss",
    "vqa_bce",
    "role_bce_losses",
    "sort_total_loss",
]

ROLE_REASONING, ROLE_SUB, ROLE_IRRELEVANT = 0, 1, 2
SORT_MODES = ("sq_iq", "sq_only", "released")


def ground_truth_scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``y_c`` of eq. 1: the score (logit) of each question's ground-truth class ``c = argmax(labels)``.

    Returns ``(scores [Q], valid [Q] bool)``; a question whose answer is outside the vocabulary
    (all-zero soft target) has no ground-truth class and is not valid.
    """
    c = labels.argmax(-1)
    valid = labels.max(-1).values > 0
    return logits.gather(-1, c.unsqueeze(-1)).squeeze(-1), valid


def gradcam_vectors(
    scores: torch.Tensor, activations: torch.Tensor, create_graph: bool = True, retain_graph: bool | None = None
) -> torch.Tensor:
    """Eq. 1: ``G = ∂y_c/∂A ⊙ A`` for a batch, in one backward pass.

    ``scores`` ``[Q]`` are the ground-truth class scores ``y_c`` and ``activations`` ``[Q, ...]`` the
    activations ``A`` of the chosen layer. Because question ``q``'s score depends on row ``q`` of
    ``A`` only (the layers after ``A`` act row-wise), ``∂(Σ_q y_q)/∂A`` holds every question's own
    gradient. ``create_graph=True`` keeps the graph so a loss on ``G`` trains the model
    (double backward through the layers after ``A``).
    """
    if scores.dim() != 1 or scores.shape[0] != activations.shape[0]:
        raise ValueError(f"scores must be [Q] and activations [Q, ...]; got {tuple(scores.shape)} and {tuple(activations.shape)}")
    (grad,) = torch.autograd.grad(
        scores.sum(), activations, create_graph=create_graph, retain_graph=True if retain_graph is None else retain_graph
    )
    return grad * activations


def safe_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise cosine similarity, scale-invariant, and 0 (with finite gradients) when either vector is zero.

    Each row is first divided by its largest absolute entry (the cosine does not change), so the norm
    floor ``eps`` only ever acts on an exactly-zero row: a tiny Grad-CAM vector (``|G| ≪ eps``, common
    when the model is confident) keeps its true cosine instead of being shrunk towards 0. Norms are
    ``sqrt(max(|x|², eps²))``, whose clamp has zero gradient below ``eps²``, so a zero row never gives ``0/0``.
    """
    a, b = _unit_max(a.flatten(1)), _unit_max(b.flatten(1))
    na = a.pow(2).sum(-1).clamp(min=eps * eps).sqrt()
    nb = b.pow(2).sum(-1).clamp(min=eps * eps).sqrt()
    return (a * b).sum(-1) / (na * nb)


def _unit_max(x: torch.Tensor) -> torch.Tensor:
    """``x / max|x|`` per row (rows of zeros unchanged)."""
    m = x.abs().amax(-1, keepdim=True)
    return x / torch.where(m > 0, m, torch.ones_like(m))


def released_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The released code's similarity (sameerdharur/sorting-vqa, ``PythiaIntrospect.cosine_distance``): each row
    divided by its largest entry (signed max, not max-abs), then ``nn.CosineSimilarity(eps=1e-6)``, i.e.
    ``x·y / (max(|x|, eps) max(|y|, eps))``.

    The released code divides by zero (NaN) for a row whose largest entry is 0; here such a row is left
    unscaled. A row whose largest entry is negative is flipped in sign, as released.
    """
    a, b = a.flatten(1), b.flatten(1)
    ma, mb = a.amax(-1, keepdim=True), b.amax(-1, keepdim=True)
    a = a / torch.where(ma != 0, ma, torch.ones_like(ma))
    b = b / torch.where(mb != 0, mb, torch.ones_like(mb))
    na = a.pow(2).sum(-1).clamp(min=eps * eps).sqrt()  # = max(|a|, eps), with a finite gradient at 0
    nb = b.pow(2).sum(-1).clamp(min=eps * eps).sqrt()
    return (a * b).sum(-1) / (na * nb)


def _reasoning_rows(roles: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
    """Index of each item's reasoning question, broadcast to every question: ``[Q]``."""
    n_items = int(item_index.max().item()) + 1 if item_index.numel() else 0
    is_r = roles == ROLE_REASONING
    counts = torch.zeros(n_items, dtype=torch.long, device=roles.device).index_add_(0, item_index, is_r.long())
    if not bool((counts == 1).all()):
        bad = (counts != 1).nonzero().flatten().tolist()
        raise ValueError(f"every item needs exactly one reasoning question (role 0); items {bad[:5]} do not")
    r_of_item = torch.empty(n_items, dtype=torch.long, device=roles.device)
    r_of_item[item_index[is_r]] = is_r.nonzero().flatten()
    return r_of_item[item_index]


def reasoning_similarities(gradcam: torch.Tensor, roles: torch.Tensor, item_index: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``cosine-sim(G_R, G_q)`` of every question with its item's reasoning question ``[Q]``.

    SOrT ranks an item's perception questions (sub and irrelevant) by this score (section 4.2)."""
    r = _reasoning_rows(roles, item_index)
    return safe_cosine(gradcam, gradcam[r], eps)


def _per_item_mean(values: torch.Tensor, weights: torch.Tensor, item_index: torch.Tensor, n_items: int) -> torch.Tensor:
    """Mean over items (that have weight) of the weighted mean of ``values`` within each item."""
    s = torch.zeros(n_items, dtype=values.dtype, device=values.device).index_add(0, item_index, values * weights)
    c = torch.zeros(n_items, dtype=values.dtype, device=values.device).index_add(0, item_index, weights)
    has = c > 0
    if not bool(has.any()):
        return values.sum() * 0.0
    return (s[has] / c[has]).mean()


def contrastive_gradient_loss(
    gradcam: torch.Tensor,
    roles: torch.Tensor,
    item_index: torch.Tensor,
    valid: torch.Tensor | None = None,
    mode: str = "sq_iq",
    eps: float = 1e-8,
) -> torch.Tensor:
    """The contrastive gradient loss ``L_CG`` (eq. 2) over a flat batch of questions.

    * ``"sq_iq"`` (paper, default): ``max(0, cos(G_R, G_I) - cos(G_R, G_S))`` for every
      (sub-question, irrelevant question) pair of an item, averaged over the item's pairs, then
      over the items that have at least one pair.
    * ``"sq_only"`` (the paper's "only SQ" ablation: irrelevant questions discarded, sub-questions
      aligned with the reasoning question): ``1 - cos(G_R, G_S)``, averaged per item then over items.
    * ``"released"`` (sameerdharur/sorting-vqa ``distance_importance_loss``, whose hinge is commented out):
      ``1 - released_cosine(G_R, G_S)`` (each vector divided by its largest entry, ``eps`` 1e-6), averaged
      per item then over items; the released batches hold one sub-question per reasoning question, where
      this is the released batch mean. Its weight in eq. 3 is 0.001 × the number of answers there
      (:func:`sort_total_loss`'s caller sets it).

    ``valid`` ``[Q]`` masks questions without a ground-truth class (their Grad-CAM vector is
    undefined); an item whose reasoning question is not valid contributes nothing. Zero
    Grad-CAM vectors are safe (cosine 0, finite gradients).
    """
    if mode not in SORT_MODES:
        raise ValueError(f"unknown SOrT mode {mode!r}; choose one of {SORT_MODES}")
    q = gradcam.shape[0]
    if roles.shape != (q,) or item_index.shape != (q,):
        raise ValueError(f"roles and item_index must be [{q}], got {tuple(roles.shape)} and {tuple(item_index.shape)}")
    if valid is None:
        valid = torch.ones(q, dtype=torch.bool, device=gradcam.device)
    r = _reasoning_rows(roles, item_index)
    ok = valid & valid[r]
    n_items = int(item_index.max().item()) + 1
    g = gradcam.flatten(1)
    is_s = (roles == ROLE_SUB) & ok
    if mode == "sq_iq":
        cos = safe_cosine(g, g[r], eps)
        is_i = (roles == ROLE_IRRELEVANT) & ok
        same = item_index.unsqueeze(1) == item_index.unsqueeze(0)
        pairs = (is_s.unsqueeze(1) & is_i.unsqueeze(0) & same).to(g.dtype)  # [S-row, I-col]
        hinge = F.relu(cos.unsqueeze(0) - cos.unsqueeze(1))  # [s, i] = max(0, cos_i - cos_s)
        per_s_sum = (hinge * pairs).sum(1)
        per_s_cnt = pairs.sum(1)
        return _pair_mean(per_s_sum, per_s_cnt, item_index, n_items)
    if mode == "sq_only":
        values = 1.0 - safe_cosine(g, g[r], eps)
    else:
        values = 1.0 - released_cosine(g[r], g)
    return _per_item_mean(values, is_s.to(g.dtype), item_index, n_items)


def _pair_mean(pair_sum: torch.Tensor, pair_cnt: torch.Tensor, item_index: torch.Tensor, n_items: int) -> torch.Tensor:
    s = torch.zeros(n_items, dtype=pair_sum.dtype, device=pair_sum.device).index_add(0, item_index, pair_sum)
    c = torch.zeros(n_items, dtype=pair_sum.dtype, device=pair_sum.device).index_add(0, item_index, pair_cnt)
    has = c > 0
    if not bool(has.any()):
        return pair_sum.sum() * 0.0
    return (s[has] / c[has]).mean()


def vqa_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``L_BCE``: BCE-with-logits against VQA soft scores, summed over answers, averaged over questions."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="mean") * targets.shape[-1]


def role_bce_losses(logits: torch.Tensor, labels: torch.Tensor, roles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L_BCE(o_R, gt_R), L_BCE(o_S, gt_S), L_BCE(o_I, gt_I))`` of eq. 3 (0 for an absent role)."""
    return tuple(vqa_bce(logits[roles == role], labels[roles == role]) for role in (ROLE_REASONING, ROLE_SUB, ROLE_IRRELEVANT))


def sort_total_loss(
    l_cg: torch.Tensor,
    bce_reasoning: torch.Tensor,
    bce_sub: torch.Tensor,
    bce_irrelevant: torch.Tensor,
    lambda_reasoning: float = 2.27,
    lambda_sub: float = 2.27,
    lambda_irrelevant: float = 0.0003,
) -> torch.Tensor:
    """Eq. 3: ``L_SOrT = L_CG + λ1 L_BCE(o_R, gt_R) + λ2 L_BCE(o_S, gt_S) + λ3 L_BCE(o_I, gt_I)``
    (paper's values λ1 = λ2 = 2.27, λ3 = 0.0003, appendix A.1.7; the released configuration uses
    λ1 = λ2 = λ3 = 0.33 and ``l_cg`` weighted by 0.001 × the number of answers)."""
    return l_cg + lambda_reasoning * bce_reasoning + lambda_sub * bce_sub + lambda_irrelevant * bce_irrelevant
