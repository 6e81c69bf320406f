"""SOrT: Sub-question Oriented Tuning (Dharur et al., NAACL 2021) as a ``Trainer``.

Each step runs the reasoning, sub- and irrelevant questions of a batch through the model in one
pass, takes Grad-CAM vectors at ``args.gradcam_module`` (captured by a forward hook on the
unwrapped model) with ``create_graph=True``, and minimises eq. 3:
``L_CG + λ1 BCE_R + λ2 BCE_S + λ3 BCE_I``. Evaluation ranks each item's perception questions by
the Grad-CAM cosine similarity with its reasoning question and reports the ranking metrics,
the quadrants and consistency.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from ..losses.gradcam import capture_activations
from ..losses.sort import (
    ROLE_IRRELEVANT,
    ROLE_REASONING,
    ROLE_SUB,
    contrastive_gradient_loss,
    gradcam_vectors,
    ground_truth_scores,
    reasoning_similarities,
    role_bce_losses,
    sort_total_loss,
)
from ..metrics.sort import consistency_metrics, ranking_metrics
from .base import HfVcrTrainer
from .sort_config import DEEPSPEED_REFUSAL, SortConfig

__all__ = ["SortTrainer"]

logger = logging.get_logger(__name__)

_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "image_features", "image_mask", "pixel_values", "question_image_index")


class SortTrainer(HfVcrTrainer):
    """``Trainer`` for SOrT; works in one process and under DDP, refuses DeepSpeed ZeRO at start."""

    def __init__(self, model=None, args: SortConfig | None = None, **kwargs: Any):
        if args is not None and not isinstance(args, SortConfig):
            raise TypeError(f"SortTrainer needs a SortConfig, got {type(args).__name__}")
        if args is not None and (getattr(args, "deepspeed", None) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"):
            raise ValueError(DEEPSPEED_REFUSAL)
        super().__init__(model=model, args=args, **kwargs)
        self._warned_no_iq = False
        if getattr(self, "is_deepspeed_enabled", False):
            raise ValueError(DEEPSPEED_REFUSAL)

    # ----------------------------------------------------------------- loss
    def _split_inputs(self, inputs: dict) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
        model_inputs = {k: inputs[k] for k in _MODEL_KEYS if k in inputs}
        return model_inputs, inputs["labels"], inputs["question_roles"], inputs["question_image_index"]

    def sort_losses(self, model, inputs: dict, create_graph: bool = True) -> dict[str, torch.Tensor]:
        """Forward once, then the components of eq. 3 and the Grad-CAM vectors."""
        args: SortConfig = self.args
        model_inputs, labels, roles, item_index = self._split_inputs(inputs)
        use_cg = args.sort_mode != "none"
        with capture_activations(model, args.gradcam_module) as cap:
            out = model(**model_inputs)
        bce_r, bce_s, bce_i = role_bce_losses(out.logits, labels, roles)
        result = {"logits": out.logits, "bce_reasoning": bce_r, "bce_sub": bce_s, "bce_irrelevant": bce_i}
        if use_cg:
            scores, valid = ground_truth_scores(out.logits, labels)
            g = gradcam_vectors(scores, cap.output, create_graph=create_graph)
            l_cg = contrastive_gradient_loss(g, roles, item_index, valid, mode=args.sort_mode, eps=args.cosine_eps)
            # flag first: the .any() check syncs with the device, once is enough
            if not self._warned_no_iq and args.sort_mode == "sq_iq" and model.training and not bool((roles == ROLE_IRRELEVANT).any()):
                self._warned_no_iq = True
                logger.warning(
                    "sort_mode='sq_iq' but the batch has no irrelevant questions (VQA-Introspect loaded without the VQAv2 "
                    "files?): the contrastive hinge is 0. Pass the VQAv2 files, or use sort_mode='sq_only'."
                )
            result.update(gradcam=g, contrastive=l_cg)
        else:
            l_cg = out.logits.sum() * 0.0
            result["contrastive"] = l_cg
        weight = args.contrastive_weight * (labels.shape[-1] if args.contrastive_weight_per_answer else 1)
        result["loss"] = sort_total_loss(
            weight * l_cg, bce_r, bce_s, bce_i, args.lambda_reasoning, args.lambda_sub, args.lambda_irrelevant
        )
        return result

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        parts = self.sort_losses(model, inputs, create_graph=model.training)
        self.record(
            loss_cg=parts["contrastive"],
            bce_reasoning=parts["bce_reasoning"],
            bce_sub=parts["bce_sub"],
            bce_irrelevant=parts["bce_irrelevant"],
        )
        return (parts["loss"], {"logits": parts["logits"]}) if return_outputs else parts["loss"]

    # ------------------------------------------------------------- evaluation
    def predict_sort(self, dataset=None) -> list[dict]:
        """Per <image, reasoning question>: ranking scores, relevance, correctness, VQA soft accuracy.

        Grad-CAM needs gradients, so this runs with autograd on (no ``create_graph``). Records are
        gathered across processes without the duplicates of an uneven last batch.
        """
        dataloader = self.get_eval_dataloader(dataset)
        model = self.model
        was_training = model.training
        model.eval()
        records: list[dict] = []
        name = self.args.gradcam_module
        for inputs in dataloader:
            inputs = self._prepare_inputs(inputs)
            model_inputs, labels, roles, item_index = self._split_inputs(inputs)
            with torch.enable_grad(), capture_activations(model, name) as cap:
                out = model(**model_inputs)
                scores, valid = ground_truth_scores(out.logits, labels)
                g = gradcam_vectors(scores, cap.output, create_graph=False, retain_graph=False)
            sims = reasoning_similarities(g.detach(), roles, item_index, self.args.cosine_eps).float().cpu().numpy()
            pred = out.logits.detach().argmax(-1)
            pred_score = labels.gather(-1, pred.unsqueeze(-1)).squeeze(-1)
            correct = ((pred_score >= labels.max(-1).values) & (labels.max(-1).values > 0)).cpu().numpy()
            soft = pred_score.float().cpu().numpy()
            roles_np, items_np = roles.cpu().numpy(), item_index.cpu().numpy()
            batch_records = []
            for b in range(int(items_np.max()) + 1):
                sel = items_np == b
                r, s, i = (sel & (roles_np == role) for role in (ROLE_REASONING, ROLE_SUB, ROLE_IRRELEVANT))
                batch_records.append(
                    {
                        "scores": [float(x) for x in np.concatenate([sims[s], sims[i]])],
                        "relevant": [1] * int(s.sum()) + [0] * int(i.sum()),
                        "reasoning_correct": bool(correct[r][0]),
                        "sub_correct": [bool(x) for x in correct[s]],
                        "vqa_scores": [float(x) for x in soft[sel]],
                    }
                )
            # per batch: accelerate drops the padded duplicates only while the last batch is current
            records.extend(self.accelerator.gather_for_metrics(batch_records, use_gather_object=True))
        model.train(was_training)
        return records

    @staticmethod
    def sort_metrics(records: list[dict]) -> dict[str, float]:
        """Ranking metrics, quadrants and consistency (all in percent), reasoning and VQA accuracy."""
        out: dict[str, float] = {}
        # ranking needs both kinds: without irrelevant questions ("only SQ" data) every ranking is trivially right
        ranked = [r for r in records if 1 in r["relevant"] and 0 in r["relevant"]]
        if ranked:
            out.update(ranking_metrics([r["scores"] for r in ranked], [r["relevant"] for r in ranked]))
        if any(r["sub_correct"] for r in records):
            c = consistency_metrics([r["reasoning_correct"] for r in records], [r["sub_correct"] for r in records])
            out.update({f"quadrant_{k}": v for k, v in c["quadrants"].items()})
            out["consistency"] = c["consistency"]
        out["reasoning_accuracy"] = 100.0 * float(np.mean([r["reasoning_correct"] for r in records]))
        out["vqa_accuracy"] = 100.0 * float(np.mean([v for r in records for v in r["vqa_scores"]]))
        return out

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        records = self.predict_sort(eval_dataset)
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in self.sort_metrics(records).items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
