"""EIGV: Equivariant and Invariant Grounding for Interpretable VideoQA (Li et al., ACM MM 2022).

Pure tensor functions, one per piece of the method; the trainer only composes them.

* :func:`gumbel_split`            - eq. 8, the hard Gumbel-softmax indicator ``I`` over ``[p_c ; p_e]``
* :func:`split_scene`             - eq. 9, ``c = I0 * v``, ``e = I1 * v``
* :func:`mix`, :func:`intervene`  - eq. 10-14, E-intervention (lambda0 ~ Beta(alpha, alpha)) on c, q, a and
                                    I-intervention (lambda1 ~ U(0, 1)) on e
* :func:`disrupt`                 - the disruptor (section 4.3): positive = environment replaced from the memory
                                    bank, video negative = causal scene replaced
* :func:`sample_other_indices`    - per-anchor question negatives, never the anchor itself
* :func:`infonce_loss`            - eq. 18
* :func:`mixed_target_cross_entropy` - eq. 19
* :func:`eigv_total_loss`         - eq. 20
* :func:`causal_ratio_penalty`    - an optional grounding prior that is not in the paper (off by default)

Shapes: ``B`` anchors, ``K`` clips, ``d`` feature size, ``N`` negatives per anchor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


GUMBEL_LOGITS = ("probabilities", "log_probabilities")


def indicator_logits(p_causal: torch.Tensor, p_env: torch.Tensor, logits: str = "probabilities", eps: float = 1e-10) -> torch.Tensor:
    """The Gumbel-softmax logits of eq. 8 for every clip, ``[..., K, 2]`` (column 0 causal, column 1 environment).

    ``"probabilities"`` is eq. 8 as written, ``Gumbel-Softmax([p_c ; p_e])``, and what the released code
    does (``F.gumbel_softmax`` over the two attention scores): the logits are ``p_c,i`` and ``p_e,i``
    themselves. Both are softmaxes over the clips, so ``sum_i (p_c,i - p_e,i) = 0``: making one clip
    more causal makes the others less so, the clips compete for the causal scene and it cannot grow to
    the whole video. ``"log_probabilities"`` reads the pair as unnormalised probabilities (the textbook
    Gumbel-softmax input): clip ``i`` is then drawn causal with probability ``p_c,i / (p_c,i + p_e,i)``,
    which a ``p_e`` peaked on one clip drives to 1 for all the others (docs/eigv.md measures this collapse).
    """
    if logits == "probabilities":
        return torch.stack([p_causal, p_env], dim=-1)
    if logits == "log_probabilities":
        return torch.stack([p_causal, p_env], dim=-1).clamp_min(eps).log()
    raise ValueError(f"gumbel logits must be one of {GUMBEL_LOGITS}, got {logits!r}")


def causal_probability(p_causal: torch.Tensor, p_env: torch.Tensor, logits: str = "probabilities") -> torch.Tensor:
    """Probability with which :func:`gumbel_split` draws each clip into the causal scene, ``[..., K]``.

    The hard Gumbel-softmax picks the argmax of ``l + g`` (the temperature only shapes the soft sample the
    gradient flows through), i.e. column 0 with probability ``softmax(l)[0] = sigmoid(l0 - l1)``.
    """
    lg = indicator_logits(p_causal, p_env, logits)
    return torch.sigmoid(lg[..., 0] - lg[..., 1])


def gumbel_split(
    p_causal: torch.Tensor,
    p_env: torch.Tensor,
    tau: float = 1.0,
    hard: bool = True,
    stochastic: bool = True,
    gumbel_noise: torch.Tensor | None = None,
    logits: str = "probabilities",
    eps: float = 1e-10,
) -> torch.Tensor:
    """EIGV eq. 8: ``I = Gumbel-Softmax([p_c ; p_e])``, returned as ``[..., K, 2]``.

    ``p_causal`` and ``p_env`` are the clip attention distributions of eq. 6-7 (``[..., K]``); ``logits``
    says how they enter the Gumbel-softmax (:func:`indicator_logits`: as written in eq. 8 and in the released
    code by default). Column 0 (``I0``) marks the causal scene, column 1 (``I1``) the environment.
    ``hard=True`` gives the straight-through one-hot split (forward is a hard 0/1 mask, gradients flow through
    the soft sample). With ``stochastic=False`` (evaluation) no noise is added, so the split is the
    deterministic ``p_c > p_e`` (for either choice of ``logits``).
    ``gumbel_noise`` (``[..., K, 2]``) may be passed to make a draw reproducible (tests).
    """
    lg = indicator_logits(p_causal, p_env, logits, eps)
    if stochastic:
        if gumbel_noise is None:
            u = torch.rand_like(lg).clamp(eps, 1.0 - eps)
            gumbel_noise = -torch.log(-torch.log(u))
        lg = lg + gumbel_noise
    soft = F.softmax(lg / tau, dim=-1)
    if not hard:
        return soft
    index = soft.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft


def split_scene(v: torch.Tensor, indicator: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """EIGV eq. 9: ``c = I0 * v``, ``e = I1 * v`` (so ``v = c + e`` for a hard indicator).

    ``v`` is ``[B, K, d]`` and ``indicator`` ``[B, K, 2]``.
    """
    return indicator[..., 0:1] * v, indicator[..., 1:2] * v


def _expand_lambda(lam: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    lam = torch.as_tensor(lam, dtype=like.dtype, device=like.device)
    if lam.dim() == 0:
        return lam
    return lam.reshape(lam.shape[0], *([1] * (like.dim() - 1)))


def mix(x: torch.Tensor, x_partner: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """``lam * x + (1 - lam) * x_partner``; ``lam`` is a scalar or one value per row of ``x``."""
    lam = _expand_lambda(lam, x)
    return lam * x + (1.0 - lam) * x_partner


def intervene(
    causal: torch.Tensor,
    env: torch.Tensor,
    question: torch.Tensor,
    target: torch.Tensor,
    partner: torch.Tensor,
    lam0: torch.Tensor | float,
    lam1: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EIGV eq. 10-14, the intervener.

    E-intervention with one ratio ``lam0`` (~ Beta(alpha, alpha)) on all causal factors::

        c* = lam0 c + (1 - lam0) c'      (10)
        q* = lam0 q + (1 - lam0) q'      (11)
        a* = lam0 a + (1 - lam0) a'      (12)

    I-intervention with ``lam1`` (~ U(0, 1)) on the environment: ``e* = lam1 e + (1 - lam1) e'`` (13),
    and ``v* = c* + e*`` (14). The second sample of row ``i`` is row ``partner[i]``.
    ``question`` is any per-sample question representation (e.g. token states ``[B, ..., L, d]``);
    ``target`` is the answer as a distribution ``[B, n_answers]`` (one-hot for a gold answer).
    Returns ``(v*, q*, a*)``.
    """
    c_star = mix(causal, causal[partner], lam0)
    e_star = mix(env, env[partner], lam1)
    q_star = mix(question, question[partner], lam0)
    a_star = mix(target, target[partner], lam0)
    return c_star + e_star, q_star, a_star


def disrupt(v_star: torch.Tensor, indicator_star: torch.Tensor, substitute: torch.Tensor, replace: str) -> torch.Tensor:
    """The disruptor (EIGV section 4.3) on the re-grounded intervened video.

    ``replace="environment"`` gives the positive ``v+ = I0* v* + I1* s`` (the environment scene
    substituted by memory-bank clips ``s``); ``replace="causal"`` gives a negative
    ``v- = I0* s + I1* v*`` (the causal scene substituted). ``v_star`` is ``[B, K, d]``,
    ``indicator_star`` ``[B, K, 2]`` and ``substitute`` ``[B, K, d]`` or ``[B, N, K, d]``
    (``N`` views per anchor, each disrupting its own anchor row); the result has the shape of ``substitute``.
    """
    if substitute.dim() == v_star.dim() + 1:
        v_star, indicator_star = v_star.unsqueeze(1), indicator_star.unsqueeze(1)
    i0, i1 = indicator_star[..., 0:1], indicator_star[..., 1:2]
    if replace == "environment":
        return i0 * v_star + i1 * substitute
    if replace == "causal":
        return i0 * substitute + i1 * v_star
    raise ValueError(f"replace must be 'environment' or 'causal', got {replace!r}")


def sample_other_indices(
    num_anchors: int,
    num_samples: int,
    allowed: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """For every anchor ``i`` draw ``num_samples`` row indices ``j != i`` uniformly, with replacement.

    Returns ``[num_anchors, num_samples]``: row ``i`` holds the partners of anchor ``i`` only, so a
    negative built from it belongs to its own anchor (the released EIGV code paired one anchor's
    negatives with other anchors' rows and could draw the anchor itself). ``allowed`` (``[B, B]`` bool)
    further restricts the candidates (e.g. rows whose question differs from the anchor's); an anchor
    with no allowed candidate falls back to every other row. Needs ``num_anchors >= 2``.
    """
    if num_anchors < 2:
        raise ValueError(f"sampling negatives from other rows needs at least 2 anchors per batch, got {num_anchors}")
    not_self = ~torch.eye(num_anchors, dtype=torch.bool, device=device)
    weights = not_self if allowed is None else (allowed.to(device) & not_self)
    empty = ~weights.any(dim=1)
    if empty.any():
        weights = torch.where(empty[:, None], not_self, weights)
    return torch.multinomial(weights.float(), num_samples, replacement=True, generator=generator)


def infonce_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 1.0,
    normalize: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """EIGV eq. 18: ``L_CL = -log( exp(a.a+) / (exp(a.a+) + sum_n exp(a.a-_n)) )``.

    ``anchor`` and ``positive`` are ``[B, D]``, ``negatives`` ``[B, N, D]`` (row ``i`` holds the
    negatives of anchor ``i``). The paper uses the raw dot product (``normalize=False``,
    ``temperature=1``); ``normalize=True`` uses cosine similarity, and every similarity is divided by
    ``temperature``.
    """
    if negatives.dim() != 3 or negatives.shape[0] != anchor.shape[0] or negatives.shape[-1] != anchor.shape[-1]:
        raise ValueError(f"negatives must be [B, N, D] matching anchor {tuple(anchor.shape)}, got {tuple(negatives.shape)}")
    if normalize:
        anchor, positive, negatives = (F.normalize(t, dim=-1) for t in (anchor, positive, negatives))
    pos = (anchor * positive).sum(-1, keepdim=True)  # [B, 1]
    neg = torch.einsum("bd,bnd->bn", anchor, negatives)  # [B, N]
    logits = torch.cat([pos, neg], dim=1) / temperature
    loss = -F.log_softmax(logits, dim=1)[:, 0]
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def one_hot_targets(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot answer distributions ``[B, num_classes]``; a label outside ``[0, num_classes)`` (e.g. -100) is an error."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(
            f"EIGV mixes answer targets, so every training label must be a valid class in [0, {num_classes}); "
            f"got {bad.tolist()[:5]} (drop answers outside the answer vocabulary from the training split)"
        )
    return F.one_hot(labels.long(), num_classes).to(dtype)


def mixed_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """EIGV eq. 19: ``L_ERM = XE(f(v*, q*), a*)``, cross entropy against the mixed answer distribution ``a*``.

    ``logits`` and ``target`` are ``[B, n_answers]`` (the options for multiple choice).
    """
    loss = -(target * F.log_softmax(logits, dim=-1)).sum(-1)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def causal_ratio_penalty(causal_prob: torch.Tensor, ratio: float) -> torch.Tensor:
    """Optional grounding prior, NOT part of EIGV's paper: ``mean_b (mean_i P(clip i causal) - ratio)^2``.

    ``causal_prob`` (``[B, K]``) is the probability with which :func:`gumbel_split` draws each clip into the
    causal scene (:func:`causal_probability`). With ``log_probabilities`` logits nothing in eq. 18-20 keeps the
    causal scene from growing to the whole video, so this penalty, in the spirit of the causal-ratio ``r`` of
    the same group's invariant-rationale work, lets it keep about ``ratio`` of the clips. Off by default.
    """
    return ((causal_prob.mean(dim=-1) - ratio) ** 2).mean()


def eigv_total_loss(erm_loss: torch.Tensor, contrastive_loss: torch.Tensor, beta: float = 0.75) -> torch.Tensor:
    """EIGV eq. 20: ``L_EIGV = L_ERM + beta * L_CL`` (paper: beta = 0.75)."""
    return erm_loss + beta * contrastive_loss


__all__ = [
    "GUMBEL_LOGITS",
    "indicator_logits",
    "causal_probability",
    "gumbel_split",
    "split_scene",
    "mix",
    "intervene",
    "disrupt",
    "sample_other_indices",
    "infonce_loss",
    "one_hot_targets",
    "mixed_target_cross_entropy",
    "eigv_total_loss",
    "causal_ratio_penalty",
]
