"""Joint Q→AR coupling losses and weightings.

"Enforcing Reasoning in Visual Commonsense Reasoning", section 3: the rationale model's
query is the question with the predicted answer appended, made differentiable by a
softmax weighting of the answers (eq. 1), a Gumbel-softmax weighting (eq. 2) with the
temperature annealed from 5 to 1, sampling with the expectation loss (eq. 3-4), or a
direct cross entropy over the 16 answer-rationale pairs (section 3.4); the "new
baseline" of section 4.3 feeds the right answer 75% of the time.

Pure tensor functions. Unlike the released code, sampled answers always score their own
example (:func:`rl_expectation_loss`), and the trainer feeds the 16-way loss the answer and
rationale views of the same item (:func:`direct16_loss`).
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

    ``epoch`` may be fractional: the trainer passes ``optimizer steps done / optimizer steps per epoch``, so τ
    changes once per optimizer step (as in the released code, which steps once per batch) whatever the
    gradient accumulation.
    """
    if anneal_epochs <= 0:
        return float(end)
    progress = min(max(float(epoch) / anneal_epochs, 0.0), 1.0)
    return float(start + (end - start) * progress)


def rationale_nll_per_answer(rationale_logits: torch.Tensor, rationale_labels: torch.Tensor) -> torch.Tensor:
    """``l(R | [q, a_i], I)`` for each answer: ``rationale_logits`` ``[B, 4 answers, 4 rationales]`` -> ``[B, 4]``.

    An item whose rationale label is -100 has no rationale loss: its row is 0 (and
    :func:`rl_expectation_loss` leaves it out of the mean when given ``rationale_labels != -100`` as ``valid``).
    """
    log_p = F.log_softmax(rationale_logits.float(), dim=-1)
    labelled = rationale_labels != -100
    labels = torch.where(labelled, rationale_labels, torch.zeros_like(rationale_labels))
    nll = -log_p.gather(-1, labels[:, None, None].expand(-1, log_p.shape[1], 1)).squeeze(-1)
    return nll * labelled[:, None].to(nll.dtype)


RL_BASELINES = ("none", "leave_one_out")


def rl_expectation_loss(
    answer_logits: torch.Tensor,
    rationale_nll: torch.Tensor,
    samples: torch.Tensor,
    baseline: str = "none",
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3-4: ``E_{A ~ P(a|q,I)} [ l(R | [q, A], I) ]`` estimated with N sampled answers per item.

    ``answer_logits`` ``[B, 4]``; ``rationale_nll`` ``[B, 4]``: the rationale loss of item b when
    answer i is appended to its question; ``samples`` ``[B, N]``: answer indices drawn for item b.
    Every sample scores its own item: sample ``(b, n)`` reads ``rationale_nll[b, samples[b, n]]``.
    The surrogate ``l(A) + sg(l(A) - baseline) log P(A)`` has the score-function gradient of eq. 4
    for f_A and the sampled rationale loss's gradient for f_R. ``baseline``: ``"none"`` (plain
    REINFORCE, the paper) or ``"leave_one_out"`` (sample n's baseline is the mean loss of the item's
    *other* N-1 samples, so it does not depend on sample n and the estimate stays unbiased; needs N ≥ 2).
    ``valid`` ``[B]`` (bool): the items that have a rationale label; the others are left out of the means.
    Returns ``(surrogate loss, estimated expected rationale loss)``, both averaged over the valid items.
    """
    if answer_logits.shape != rationale_nll.shape or samples.dim() != 2 or samples.shape[0] != answer_logits.shape[0]:
        raise ValueError(
            f"expected answer_logits and rationale_nll [B, A] and samples [B, N], got {tuple(answer_logits.shape)}, "
            f"{tuple(rationale_nll.shape)}, {tuple(samples.shape)}"
        )
    if baseline not in RL_BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {RL_BASELINES}")
    n = samples.shape[1]
    if baseline == "leave_one_out" and n < 2:
        raise ValueError("the leave-one-out baseline needs at least 2 samples per item")
    log_p = F.log_softmax(answer_logits.float(), dim=-1)
    sampled_nll = rationale_nll.float().gather(1, samples)  # [B, N]: item b's own losses only
    sampled_log_p = log_p.gather(1, samples)  # [B, N]
    reward = sampled_nll.detach()
    if baseline == "leave_one_out":
        reward = reward - (reward.sum(dim=1, keepdim=True) - reward) / (n - 1)
    per_item = (sampled_nll + reward * sampled_log_p).mean(1)  # [B]
    w = torch.ones_like(per_item) if valid is None else valid.to(per_item.dtype)
    count = w.sum().clamp(min=1.0)
    return (per_item * w).sum() / count, (sampled_nll.detach().mean(1) * w).sum() / count


def direct16_loss(rationale_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Section 3.4: cross entropy over the 16 (answer i, rationale j) pairs with label ``4a + r``.

    The pair score is f_R's logit of rationale j with answer i appended to the question,
    ``rationale_logits`` ``[B, 4, 4]`` flattened answer-major (as the released code concatenates the four
    answer-conditioned rationale logits). The answer model is trained by its own cross entropy beside it
    (paper: "two losses for all our methods"; released weights 0.2 and 0.8, :func:`joint_objective`).
    """
    if rationale_logits.dim() != 3 or rationale_logits.shape[1:] != (N_ANSWERS, N_ANSWERS):
        raise ValueError(f"expected rationale logits [B, 4 answers, 4 rationales], got {tuple(rationale_logits.shape)}")
    return multiple_choice_loss(rationale_logits.float().flatten(1), labels)


def baseline75_answers(
    answer_labels: torch.Tensor, p_correct: float = 0.75, generator: torch.Generator | None = None, n_answers: int = N_ANSWERS
) -> torch.Tensor:
    """Section 4.3's baseline: the right answer with probability ``p_correct``, otherwise one of the other answers uniformly."""
    labels = answer_labels.clamp(min=0)
    keep = torch.rand(labels.shape, generator=generator, device=labels.device) < p_correct
    offset = torch.randint(1, n_answers, labels.shape, generator=generator, device=labels.device)
    return torch.where(keep, labels, (labels + offset) % n_answers)


def joint_objective(answer_loss: torch.Tensor, rationale_loss: torch.Tensor, ratio: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """``w_QA L_Q→A + w_QAR L_QA→R`` (section 4.2, "two losses for all our methods"); the paper uses 1:1 and
    ablates 1:4 (Table 4); the released direct-16 code weights 4/20 : 16/20 = 0.2 : 0.8."""
    return ratio[0] * answer_loss + ratio[1] * rationale_loss


__all__ = [
    "weighted_answer_representation",
    "softmax_weights",
    "sample_gumbel",
    "gumbel_softmax_weights",
    "gumbel_temperature",
    "rationale_nll_per_answer",
    "RL_BASELINES",
    "rl_expectation_loss",
    "direct16_loss",
    "baseline75_answers",
    "joint_objective",
    "multiple_choice_loss",
]
