"""EIGV (Equivariant and Invariant Grounding for Interpretable VideoQA, Li et al., ACM MM 2022) as a ``Trainer``.

One training step (``objective="eigv"``):

1. encode clips ``v`` and question ``q``; ground ``v`` into causal scene ``c`` and environment ``e`` (eq. 6-9);
2. intervene with a partner sample: ``c*, q*, a*`` mixed by ``lambda0 ~ Beta(alpha, alpha)``, ``e*`` by
   ``lambda1 ~ U(0, 1)``; ``v* = c* + e*`` (eq. 10-14);
3. re-ground ``v*`` and disrupt it: the positive replaces its environment with memory-bank environment
   clips, each video negative replaces its causal scene with memory-bank clips, each question negative pairs
   ``v*`` with another sample's question. Every negative is drawn for its own anchor, never from the
   anchor's (or its partner's) video or question;
4. run the anchor, the positive and the ``N`` negatives of every anchor through the backbone in ONE batched
   forward (``(2 + N) * B`` rows); ERM on the mixed target (eq. 19) + ``beta`` * InfoNCE (eq. 18) = eq. 20.

``erm_warmup_steps`` > 0 trains the first steps with plain cross entropy (the intervener and the disruptor carry
signal only once the backbone answers from the clips). The memory bank is a bounded ring buffer of raw clip features (``memory_bank_size`` clips per process),
refreshed from every training batch; clips grounded as environment are the positives' substitutes.

The multi-view computation runs *inside* the model's forward (``model(..., compute_fn=...)``), so DDP and
DeepSpeed see one ordinary forward and synchronise gradients as usual.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses.eigv import (
    causal_probability,
    causal_ratio_penalty,
    disrupt,
    eigv_total_loss,
    infonce_loss,
    intervene,
    mixed_target_cross_entropy,
    one_hot_targets,
    sample_other_indices,
    split_scene,
)
from .base import HfVcrTrainer
from .eigv_config import EigvConfig

__all__ = ["EigvTrainer", "ClipMemoryBank", "eigv_views_step"]

_MODEL_KEYS = ("clip_features", "input_ids", "attention_mask", "token_type_ids", "labels")


class ClipMemoryBank:
    """A bounded ring buffer of raw clip features with the video each clip came from.

    ``push`` adds a batch's clips (the oldest are overwritten beyond ``capacity``); ``sample`` draws clips
    for every anchor from videos other than the ones it must exclude. Memory: ``capacity * feature_dim``
    floats, independent of the dataset size.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"memory bank capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.features: torch.Tensor | None = None
        self.video: torch.Tensor | None = None
        self.environment: torch.Tensor | None = None
        self.size = 0
        self.ptr = 0
        self.anonymous_issued = 0  # fallback video ids handed out so far (part of the bank's state)

    def anonymous_video_ids(self, n: int, device=None) -> torch.Tensor:
        """``n`` fresh video ids for rows without a ``video_index``: negative, never issued before, so no two
        rows ever share one (ids repeating every batch would make the bank exclude other clips than the row's)."""
        ids = -2 - self.anonymous_issued - torch.arange(n, device=device)
        self.anonymous_issued += n
        return ids

    @torch.no_grad()
    def push(self, clips: torch.Tensor, video_index: torch.Tensor, environment: torch.Tensor) -> None:
        """``clips`` ``[B, K, D]``, ``video_index`` ``[B]``, ``environment`` ``[B, K]`` bool (grounded as environment)."""
        b, k, dim = clips.shape
        feats = clips.detach().reshape(b * k, dim)
        vids = video_index.detach().reshape(b, 1).expand(b, k).reshape(-1)
        env = environment.detach().reshape(-1).bool()
        if self.features is None or self.features.shape[1] != dim or self.features.device != feats.device:
            self.features = feats.new_zeros(self.capacity, dim)
            self.video = torch.full((self.capacity,), -1, dtype=torch.long, device=feats.device)
            self.environment = torch.zeros(self.capacity, dtype=torch.bool, device=feats.device)
            self.size = self.ptr = 0
        if feats.shape[0] > self.capacity:
            feats, vids, env = feats[-self.capacity :], vids[-self.capacity :], env[-self.capacity :]
        n = feats.shape[0]
        idx = (self.ptr + torch.arange(n, device=feats.device)) % self.capacity
        self.features[idx] = feats.to(self.features.dtype)
        self.video[idx] = vids
        self.environment[idx] = env
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    @torch.no_grad()
    def sample(self, exclude_videos: torch.Tensor, num_views: int, num_clips: int, environment_only: bool = False) -> torch.Tensor:
        """``[B, num_views, num_clips, D]`` clips for anchors ``b`` drawn from videos not in ``exclude_videos[b]`` (``[B, E]``).

        ``environment_only`` prefers clips grounded as environment (falling back to any clip of another
        video when an anchor has none); an anchor with no admissible clip at all gets zero vectors.
        """
        if self.features is None or self.size == 0:
            raise RuntimeError("the memory bank is empty: push a batch before sampling")
        b = exclude_videos.shape[0]
        vids = self.video[: self.size]
        allowed = ~(vids[None, None, :] == exclude_videos[:, :, None]).any(dim=1)  # [B, S]
        if environment_only:
            env_allowed = allowed & self.environment[: self.size][None, :]
            allowed = torch.where(env_allowed.any(dim=1, keepdim=True), env_allowed, allowed)
        empty = ~allowed.any(dim=1)
        weights = torch.where(empty[:, None], torch.ones_like(allowed), allowed).float()
        idx = torch.multinomial(weights, num_views * num_clips, replacement=True)  # [B, V*K]
        out = self.features[: self.size][idx]  # [B, V*K, D]
        if empty.any():
            out[empty] = 0.0
        return out.reshape(b, num_views, num_clips, -1)

    def state_dict(self) -> dict[str, Any]:
        """Contents and pointer, saved per process in every checkpoint (HfVcrTrainer.register_state) for exact resume."""
        tensors = {} if self.features is None else {"features": self.features, "video": self.video, "environment": self.environment}
        return {**tensors, "size": self.size, "ptr": self.ptr, "capacity": self.capacity, "anonymous_issued": self.anonymous_issued}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"memory bank state has capacity {state['capacity']}, this bank {self.capacity}")
        self.features, self.video, self.environment = state.get("features"), state.get("video"), state.get("environment")
        self.size, self.ptr = int(state["size"]), int(state["ptr"])
        self.anonymous_issued = int(state.get("anonymous_issued", 0))


def eigv_views_step(model, inputs: dict[str, torch.Tensor], args: EigvConfig, bank: ClipMemoryBank) -> dict[str, torch.Tensor]:
    """One EIGV training step on a batch (see the module docstring); ``model`` is the unwrapped VideoQA model.

    ``model`` must provide ``encode``, ``ground``, ``question_vector``, ``project_clips``, ``answer``,
    ``answer_representation`` and ``num_targets`` (hf_vcr's VideoQA heads do).
    Returns ``loss`` (eq. 20) and its components.
    """
    clips, labels = inputs["clip_features"], inputs["labels"]
    bsz, k = clips.shape[0], clips.shape[1]
    device = clips.device
    video_index = inputs.get("video_index")
    if video_index is None:  # no ids: every row is its own video, with an id never used before by any bank entry
        video_index = bank.anonymous_video_ids(bsz, device=device)
    enc = model.encode(clips, inputs["input_ids"], inputs.get("attention_mask"), inputs.get("token_type_ids"))
    v, q_tokens, q_mask, q_vec = enc["v"], enc["q_tokens"], enc["q_mask"], enc["q_vec"]

    # grounding indicator (eq. 6-9) and intervener (eq. 10-14)
    indicator, p_causal, p_env = model.ground(v, q_vec, stochastic=True)
    causal, env = split_scene(v, indicator)
    target = one_hot_targets(labels, model.num_targets, dtype=v.dtype)
    partner = torch.randperm(bsz, device=device)
    lam0 = torch.distributions.Beta(args.mix_alpha, args.mix_alpha).sample((bsz,)).to(device=device, dtype=v.dtype)
    lam1 = torch.rand(bsz, device=device, dtype=v.dtype)
    v_star, q_star, a_star = intervene(causal, env, q_tokens, target, partner, lam0, lam1)
    q_star_mask = torch.maximum(q_mask, q_mask[partner])
    indicator_star, _, _ = model.ground(v_star, model.question_vector(q_star, q_star_mask), stochastic=True)

    # memory bank: refreshed from this batch, then sampled (never from the anchor's or its partner's video)
    bank.push(clips, video_index, environment=indicator[..., 1].detach() > 0.5)
    exclude = torch.stack([video_index, video_index[partner]], dim=1)
    n_vid = args.num_video_negatives
    n_q = args.num_question_negatives if bsz >= 2 else 0
    raw = torch.cat(
        [bank.sample(exclude, 1, k, environment_only=True)] + ([bank.sample(exclude, n_vid, k)] if n_vid else []), dim=1
    )  # [B, 1 + n_vid, K, D]
    substitutes = model.project_clips(raw)
    v_pos = disrupt(v_star, indicator_star, substitutes[:, :1], replace="environment")  # [B, 1, K, d]
    views_v = [v_star.unsqueeze(1), v_pos]
    if n_vid:
        views_v.append(disrupt(v_star, indicator_star, substitutes[:, 1:], replace="causal"))  # [B, n_vid, K, d]
    n_same_q = 2 + n_vid
    q_views = [q_star.unsqueeze(1).expand(bsz, n_same_q, *q_star.shape[1:])]
    m_views = [q_star_mask.unsqueeze(1).expand(bsz, n_same_q, *q_star_mask.shape[1:])]
    if n_q:
        ids = inputs["input_ids"].reshape(bsz, -1)
        same = (ids[:, None, :] == ids[None, :, :]).all(-1) if ids.shape[1] else torch.ones(bsz, bsz, dtype=torch.bool, device=device)
        q_idx = sample_other_indices(bsz, n_q, allowed=~same, device=device)  # [B, n_q], never the anchor
        views_v.append(v_star.unsqueeze(1).expand(bsz, n_q, *v_star.shape[1:]))
        q_views.append(q_tokens[q_idx])
        m_views.append(q_mask[q_idx])
    n_views = n_same_q + n_q
    all_v = torch.cat(views_v, dim=1).reshape(bsz * n_views, *v_star.shape[1:])
    all_q = torch.cat(q_views, dim=1).reshape(bsz * n_views, *q_star.shape[1:])
    all_m = torch.cat(m_views, dim=1).reshape(bsz * n_views, *q_star_mask.shape[1:])

    # ONE batched backbone forward over anchors, positives and negatives
    logits, pooled = model.answer(all_v, all_q, all_m)
    reps = model.answer_representation(pooled).reshape(bsz, n_views, -1)
    anchor_logits = logits.reshape(bsz, n_views, *logits.shape[1:])[:, 0]

    erm = mixed_target_cross_entropy(anchor_logits, a_star)  # eq. 19
    if n_views > 2:
        cl = infonce_loss(
            reps[:, 0], reps[:, 1], reps[:, 2:], temperature=args.contrastive_temperature, normalize=args.contrastive_normalize
        )  # eq. 18
    else:
        cl = reps.sum() * 0.0
    loss = eigv_total_loss(erm, cl, args.eigv_beta)  # eq. 20
    if args.causal_ratio_weight > 0:  # optional prior, not in the paper
        loss = loss + args.causal_ratio_weight * causal_ratio_penalty(
            causal_probability(p_causal, p_env, model.config.gumbel_logits), args.causal_ratio
        )
    return {
        "loss": loss,
        "erm_loss": erm.detach(),
        "contrastive_loss": cl.detach(),
        "causal_fraction": indicator[..., 0].detach().mean(),
        "logits": anchor_logits,
    }


class EigvTrainer(HfVcrTrainer):
    """``Trainer`` for EIGV (and, with ``objective="erm"``, the plain-ERM baseline on the same backbone).

    Evaluation and prediction use the model's ordinary forward: the answer from the whole video and the
    deterministic causal clip mask (``causal_mask``, ``causal_probs``) beside it.
    """

    def __init__(self, model=None, args: EigvConfig | None = None, **kwargs: Any):
        if args is not None and not isinstance(args, EigvConfig):
            raise TypeError(f"EigvTrainer needs an EigvConfig, got {type(args).__name__}")
        super().__init__(model=model, args=args, **kwargs)
        self.memory_bank = ClipMemoryBank(self.args.memory_bank_size)
        self.register_state("memory_bank", self.memory_bank)

    def _eigv_compute(self, model, inputs):
        return eigv_views_step(model, inputs, self.args, self.memory_bank)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and self.args.objective == "eigv" and self.state.global_step >= self.args.erm_warmup_steps:
            # runs inside the (possibly DDP/DeepSpeed-wrapped) forward, see VideoQa*.forward(compute_fn=...)
            out = model(**inputs, compute_fn=self._eigv_compute)
            self.record(erm_loss=out["erm_loss"], contrastive_loss=out["contrastive_loss"], causal_fraction=out["causal_fraction"])
            loss = out["loss"]
            return (loss, {"logits": out["logits"]}) if return_outputs else loss
        model_inputs = {k: inputs[k] for k in _MODEL_KEYS if k in inputs}
        out = model(**model_inputs)
        if model.training:
            self.record(erm_loss=out.loss)
        return (out.loss, out) if return_outputs else out.loss
