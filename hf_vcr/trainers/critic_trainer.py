"""CriticTrainer: the LSKD critic (Park et al., 2023, section 2.3).

``L = CE(accept/reject) + 0.5 MSE(QA score) + 0.5 MSE(rationale score)`` (released weights, the defaults); the
rationale head regresses onto the rationale score ``r_score`` (not the QA score, as the released code does).
"""

from __future__ import annotations

import numpy as np
import torch

from ..losses.lskd import critic_loss
from .base import HfVcrTrainer


class CriticTrainer(HfVcrTrainer):
    def evaluation_loop(self, *args, **kwargs):
        # The script scores the initial critic before training. transformers builds an inference engine
        # only for ZeRO-3 and refuses ZeRO-1/2 before the training engine exists: evaluate the plain model.
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        if not (self.is_deepspeed_enabled and self.deepspeed is None and not is_deepspeed_zero3_enabled()):
            return super().evaluation_loop(*args, **kwargs)
        self.is_deepspeed_enabled = False
        try:
            return super().evaluation_loop(*args, **kwargs)
        finally:
            self.is_deepspeed_enabled = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        inputs.pop("example_ids", None)
        out = model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        args = self.args
        parts = critic_loss(
            out.logits, inputs["labels"], out.qa_score, inputs["qa_score"], out.rationale_score, inputs["r_score"],
            weights=(args.ce_weight, args.qa_mse_weight, args.rationale_mse_weight),
        )
        loss = parts.pop("loss")
        self.record(**parts)
        if return_outputs:
            preds = torch.stack([out.logits.softmax(-1)[:, 1], out.qa_score, out.rationale_score], dim=-1)
            return loss, {"logits": preds}
        return loss


def critic_metrics(threshold: float = 0.8):
    """``compute_metrics`` for ``CriticTrainer``, in percent: accuracy at P(accept) = 0.5, precision (share of accepted
    lines) and kept share at ``threshold``, and the share of accepted lines. ``precision_at_threshold`` is None
    (JSON null) when no line reaches the threshold."""

    def compute(eval_pred) -> dict[str, float | None]:
        preds, labels = eval_pred.predictions, eval_pred.label_ids
        score = np.asarray(preds)[:, 0]
        labels = np.asarray(labels).astype(int)
        kept = score >= threshold
        return {
            "accuracy": 100.0 * float(((score >= 0.5).astype(int) == labels).mean()),
            "precision_at_threshold": 100.0 * float(labels[kept].mean()) if kept.any() else None,
            "kept_fraction": 100.0 * float(kept.mean()),
            "accept_rate": 100.0 * float(labels.mean()),
        }

    return compute
