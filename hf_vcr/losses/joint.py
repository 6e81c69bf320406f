"""Joint Q→AR coupling losses and weightings.

"Enforcing Reasoning in Visual Commonsense Reasoning", section 3: the rationale model's
query is the question with the predicted answer appended, made differentiable by a
softmax weighting of the answers (eq. 1), a Gumbel-softmax weighting (eq. 2) with the
temperature annealed from 5 to 1, sampling with the expectation loss (eq. 3-4), or a
direct cross entropy over the 16 answer-rationale pairs (section 3.4); the "new
baseline" of section 4.3 feeds the right answer 75% of the time.

Pure tensor functions. Unlike the released code, sampled answers always score their own
example (:func:`rl_expectation_loss`), and the 16-way loss pairs the answer and rationale
scores of the same item (:func:`direct16_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .multiple_choice import multiple_choice_loss

N_ANSWERS = 4


def weighted_answer_representation(weights: torch.Tensor, answer_embeddings: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``A_w = Σ_i p̂_i a_i``.

    ``weights`` ``[B, K, 4]`` (K weightings per item, e.g. K=1 softmax, K=4 one-hot per answer),
    ``answer_embeddings`` ``[B, 4, L_a, H]`` (the answers' token representations, zero where
    padded). Returns ``[B, K, L_a, H]``.
    """
    if weights.dim() != 3 or answer_embeddings.dim() != 4 or weights.shape[-1] != answer_embeddings.shape[1]:
        raise ValueError(
            f"expected weights [B, K, A] and answer embeddings [B, A, L, H], got {tuple(weights.shape)} and "
            f"{tuple(answer_embeddings.shape)}"
        )
    return torch.einsum("bka,balh->bklh", weights.to(answer_embeddings.dtype), answer_embeddings)


def softmax_weights(answer_logits: torch.Tensor) -> torch.Tensor:
    """Section 3.1: ``p̂ = softmax(z_A)`` (the weights of eq. 1)."""
    return F.softmax(answer_logits.float(), dim=-1)


def sample_gumbel(shape, generator: torch.Generator | None = None, device=None, eps: float = 1e-10) -> torch.Tensor:
    """Standard Gumbel noise ``g = -log(-log u)``, ``u ~ U(0, 1)``."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u + eps) + eps)


def gumbel_softmax_weights(answer_logits: torch.Tensor, tau: float, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2: ``ĝ = softmax((p̂ + g) / τ)`` with ``p̂`` the answer log-probabilities and ``g`` Gumbel noise.

    ``noise`` is the Gumbel sample (drawn here when None). Evaluation must not call this:
    it is deterministic and feeds the predicted answer (the released code kept the noise).
    """
    if tau <= 0:
        raise ValueError(f"the Gumbel temperature must be positive, got {tau}")
    log_p = F.log_softmax(answer_logits.float(), dim=-1)
    if noise is None:
        noise = sample_gumbel(log_p.shape, device=log_p.device)
    return F.softmax((log_p + noise) / tau, dim=-1)


def gumbel_temperature(epoch: float, start: float = 5.0, end: float = 1.0, anneal_epochs: float = 10.0) -> float:
    """Section 4.4.1: τ falls linearly from ``start`` to ``end`` over ``anneal_epochs`` epochs, then stays at ``end``.

    ``epoch`` may be fractional (the trainer passes ``state.epoch``).
    """
    if anneal_epochs <= 0:
        return float(end)
    progress = min(max(float(epoch) / anneal_epochs, 0.0), 1.0)
    return float(start + (end - start) * progress)


def rationale_nll_per_answer(rationale_logits: torch.Tensor, rationale_labels: torch.Tensor) -> torch.Tensor:
    """``l(R | [q, a_i], I)`` for each answer: ``rationale_logits`` ``[B, 4 answers, 4 rationales]`` -> ``[B, 4]``."""
    log_p = F.log_softmax(rationale_logits.float(), dim=-1)
    labels = rationale_labels.clamp(min=0)
    return -log_p.gather(-1, labels[:, None, None].expand(-1, log_p.shape[1], 1)).squeeze(-1)


def rl_expectation_loss(
    answer_logits: torch.Tensor,
    rationale_nll: torch.Tensor,
    samples: torch.Tensor,
    baseline: str = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3-4: ``E_{A ~ P(a|q,I)} [ l(R | [q, A], I) ]`` estimated with N sampled answers per item.

    ``answer_logits`` ``[B, 4]``; ``rationale_nll`` ``[B, 4]``: the rationale loss of item b when
    answer i is appended to its question; ``samples`` ``[B, N]``: answer indices drawn for item b.
    Every sample scores its own item: sample ``(b, n)`` reads ``rationale_nll[b, samples[b, n]]``.
    The surrogate ``l(A) + sg(l(A) - baseline) log P(A)`` has the score-function gradient of eq. 4
    for f_A and the sampled rationale loss's gradient for f_R. ``baseline``: ``"none"`` (plain
    REINFORCE) or ``"mean"`` (the mean sampled loss of the same item, a variance reduction).
    Returns ``(surrogate loss, estimated expected rationale loss)``, both averaged over the items.
    """
    if answer_logits.shape != rationale_nll.shape or samples.dim() != 2 or samples.shape[0] != answer_logits.shape[0]:
        raise ValueError(
            f"expected answer_logits and rationale_nll [B, A] and samples [B, N], got {tuple(answer_logits.shape)}, "
            f"{tuple(rationale_nll.shape)}, {tuple(samples.shape)}"
        )
    log_p = F.log_softmax(answer_logits.float(), dim=-1)
    sampled_nll = rationale_nll.float().gather(1, samples)  # [B, N]: item b's own losses only
    sampled_log_p = log_p.gather(1, samples)  # [B, N]
    reward = sampled_nll.detach()
    if baseline == "mean":
        reward = reward - reward.mean(dim=1, keepdim=True)
    elif baseline != "none":
        raise ValueError(f"unknown baseline {baseline!r}; choose 'none' or 'mean'")
    surrogate = (sampled_nll + reward * sampled_log_p).mean()
    return surrogate, sampled_nll.detach().mean()


def direct16_loss(answer_logits: torch.Tensor, rationale_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Section 3.4: cross entropy over the 16 (answer i, rationale j) pairs with label ``4a + r``.

    The pair score is ``z_A[b, i] + z_R[b, i, j]``: answer logits ``[B, 4]`` and rationale logits
    ``[B, 4, 4]`` (rationale j given answer i) must come from the same item b. Returns the mean loss.
    """
    if rationale_logits.dim() != 3 or answer_logits.shape != rationale_logits.shape[:2]:
        raise ValueError(
            f"expected answer logits [B, 4] and rationale logits [B, 4, 4] of the same items, got "
            f"{tuple(answer_logits.shape)} and {tuple(rationale_logits.shape)}"
        )
    pair = answer_logits.float()[:, :, None] + rationale_logits.float()
    return multiple_choice_loss(pair.flatten(1), labels)


def baseline75_answers(
    answer_labels: torch.Tensor, p_correct: float = 0.75, generator: torch.Generator | None = None, n_answers: int = N_ANSWERS
) -> torch.Tensor:
    """Section 4.3's baseline: the right answer with probability ``p_correct``, otherwise one of the other answers uniformly."""
    labels = answer_labels.clamp(min=0)
    keep = torch.rand(labels.shape, generator=generator, device=labels.device) < p_correct
    offset = torch.randint(1, n_answers, labels.shape, generator=generator, device=labels.device)
    return torch.where(keep, labels, (labels + offset) % n_answers)


def joint_objective(answer_loss: torch.Tensor, rationale_loss: torch.Tensor, ratio: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """``w_QA L_Q→A + w_QAR L_QA→R``; the paper uses 1:1 and ablates 1:4 (Table 4)."""
    return ratio[0] * answer_loss + ratio[1] * rationale_loss


__all__ = [
    "weighted_answer_representation",
    "softmax_weights",
    "sample_gumbel",
    "gumbel_softmax_weights",
    "gumbel_temperature",
    "rationale_nll_per_answer",
    "rl_expectation_loss",
    "direct16_loss",
    "baseline75_answers",
    "joint_objective",
    "multiple_choice_loss",
]
