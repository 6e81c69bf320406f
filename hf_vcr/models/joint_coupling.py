"""The rationale query of joint Q→AR coupling ("Enforcing Reasoning in VCR", section 3.1, eq. 1).

The rationale model reads ``[CLS] question A_w [SEP] rationale_j [SEP]`` where
``A_w = Σ_i w_i a_i`` is a weighted sum of the answers' token embeddings (eq. 1; softmax
weights, Gumbel-softmax weights (eq. 2), or a one-hot vector for a sampled / predicted /
given answer). It works with any scorer that looks its tokens up in a word-embedding
table (``VcrForMultipleChoice``, :class:`~hf_vcr.models.adapters.VisualBertForVcr`, any
transformers encoder): the weighted embeddings are written into the answer slot by a
forward hook on that table, so gradients flow from the rationale loss into the weights,
and so into the answer model. With a one-hot weight the input is exactly the question
followed by that answer's tokens.

Object grounding of slot tokens is kept where every weighted answer names the same
object at that position (e.g. the referenced person in "[person1] is ..."), dropped
elsewhere.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses.joint import weighted_answer_representation
from .adapters import input_embedding_module


@contextlib.contextmanager
def replace_embeddings(embedding: nn.Module, mask: torch.Tensor, replacement: torch.Tensor):
    """Within the block, outputs of ``embedding`` of shape ``mask.shape + (H,)`` take ``replacement`` where ``mask``."""

    def hook(module, inputs, output):
        if output.shape[:-1] != mask.shape:
            return output
        return torch.where(mask.unsqueeze(-1), replacement.to(output.dtype), output)

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class AnswerConditionedRationaleScorer:
    """Scores the 4 rationales of each item under K answer weightings with one forward pass.

    ``__call__(model, batch, weights [B, K, 4])`` returns ``(logits [B, K, 4], pooled [B, K, 4, H])``;
    ``batch`` holds the tensors of :func:`hf_vcr.trainers.coupling_data.answer_slot_batch` and the
    shared visual tensors.
    """

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor], weights: torch.Tensor, output_attentions: bool = False):
        embedding = input_embedding_module(model)
        ids = batch["slot_input_ids"]  # [B, 4, L]
        B, R, L = ids.shape
        K = weights.shape[1]
        answer_ids, answer_mask = batch["answer_ids"], batch["answer_mask"]  # [B, 4, La]
        answer_emb = F.embedding(answer_ids, embedding.weight) * answer_mask.unsqueeze(-1).to(embedding.weight.dtype)
        mixed = weighted_answer_representation(weights, answer_emb)  # [B, K, La, H]  (eq. 1)
        slot = batch["slot_index"]  # [B, L]
        in_slot = slot >= 0
        idx = slot.clamp(min=0)
        gathered = mixed.gather(2, idx[:, None, :, None].expand(B, K, L, mixed.shape[-1]))  # [B, K, L, H]
        replacement = gathered[:, :, None].expand(B, K, R, L, -1).reshape(B * K * R, L, -1)
        mask = in_slot[:, None, None, :].expand(B, K, R, L).reshape(B * K * R, L)

        # attention in the slot: positions some weighted answer fills
        used = (weights > 0).unsqueeze(-1) & answer_mask.bool()[:, None]  # [B, K, 4, La]
        slot_on = used.any(2).gather(2, idx[:, None, :].expand(B, K, L)) & in_slot[:, None]  # [B, K, L]
        # grounding in the slot: the object of the heaviest answer, if all weighted answers agree
        top = weights.argmax(-1)  # [B, K]
        top_obj = batch["answer_object_ids"].gather(1, top[..., None].expand(B, K, answer_ids.shape[-1]))  # [B, K, La]
        agree = ((batch["answer_object_ids"][:, None] == top_obj[:, :, None]) | ~used).all(2)  # [B, K, La]
        slot_obj = torch.where(agree, top_obj, torch.full_like(top_obj, -1)).gather(2, idx[:, None, :].expand(B, K, L))

        def expand(t):  # [B, 4, L] -> [B, K*4, L]
            return t[:, None].expand(B, K, R, L).reshape(B, K * R, L)

        attention = expand(batch["slot_attention_mask"]).clone().view(B, K, R, L)
        attention = torch.where(in_slot[:, None, None, :], slot_on[:, :, None, :].long(), attention).view(B, K * R, L)
        object_ids = expand(batch["slot_object_ids"]).clone().view(B, K, R, L)
        object_ids = torch.where(in_slot[:, None, None, :], slot_obj[:, :, None, :], object_ids).view(B, K * R, L)
        inputs = {
            "input_ids": expand(ids),
            "token_type_ids": expand(batch["slot_token_type_ids"]),
            "attention_mask": attention,
            "object_ids": object_ids,
        }
        for k in ("boxes", "box_mask", "pixel_values", "region_features"):
            if k in batch:
                inputs[k] = batch[k]
        with replace_embeddings(embedding, mask, replacement):
            out = model(**inputs, output_attentions=output_attentions)
        logits = out["logits"].view(B, K, R)
        pooled = out["pooled_output"].view(B, K, R, -1)
        return logits, pooled


def one_hot_weights(answers: torch.Tensor, n_answers: int = 4) -> torch.Tensor:
    """``[B]`` answer indices -> one-hot weights ``[B, 1, 4]``; ``[B, K]`` -> ``[B, K, 4]``."""
    if answers.dim() == 1:
        answers = answers[:, None]
    return F.one_hot(answers.clamp(min=0), n_answers).float()


def all_answers_weights(batch_size: int, n_answers: int = 4, device=None) -> torch.Tensor:
    """One-hot weights for every answer: ``[B, 4, 4]`` (scores rationale j given answer i)."""
    return torch.eye(n_answers, device=device).expand(batch_size, n_answers, n_answers)
