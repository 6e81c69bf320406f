"""``VcrTrainer``: multiple-choice cross entropy on one VCR view, and the Q→AR evaluation."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from ..losses.multiple_choice import multiple_choice_loss
from ..metrics.vcr import accuracies_from_scores
from .base import HfVcrTrainer


def multiple_choice_accuracy(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    valid = labels != -100
    return {"accuracy": float(100.0 * (logits.argmax(-1)[valid] == labels[valid]).mean())}


class VcrTrainer(HfVcrTrainer):
    """Trains any multiple-choice scorer returning ``logits [B, C]`` with cross entropy."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = multiple_choice_loss(outputs["logits"], labels)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # only the logits leave the step: pooled features are large and not needed for metrics
        labels = inputs.get("labels")
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, dict(inputs), return_outputs=True)
        return loss.detach(), outputs["logits"].detach(), labels

    def predict_logits(self, dataset: Dataset) -> np.ndarray:
        """Logits for every example of ``dataset`` in order, gathered across processes.

        A model this trainer did not train (a finished task reused by a rerun) under DeepSpeed ZeRO-1/2 has no
        engine yet, and ``Trainer.predict`` would build a ZeRO *inference* engine, which DeepSpeed allows at
        stage 3 only ("ZeRO inference only makes sense with ZeRO Stage 3"). Below stage 3 the weights are whole
        on every process, so every process runs the plain batched loop of ``hf-vcr predict`` over the whole set
        (the same logits everywhere, nothing to gather).
        """
        if self._whole_model_without_engine():
            from ..predict.common import predict_logits

            self.model.to(self.args.device)
            return predict_logits(self.model, dataset, self.data_collator, self.args.per_device_eval_batch_size, self.args.device,
                                  desc="evaluation", progress=not self.args.disable_tqdm and self.is_world_process_zero())
        return self.predict(dataset).predictions

    def _whole_model_without_engine(self) -> bool:
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        return self.is_deepspeed_enabled and self.deepspeed is None and not is_deepspeed_zero3_enabled()


def evaluate_q2ar(q2a_trainer: VcrTrainer, qa2r_trainer: VcrTrainer, q2a_view: Dataset, joint_view: Dataset):
    """Q→A, QA→R and Q→AR with predicted answers (Zellers et al., 2019).

    ``joint_view`` holds 16 (answer i, rationale j) pairs per item; QA→R is read off the
    right answer's row, Q→AR off the predicted answer's row. Returns ``(metrics,
    answer_logits [N, 4], rationale_logits [N, 4, 4])``.
    """
    answer_logits = q2a_trainer.predict_logits(q2a_view)
    rationale_logits = qa2r_trainer.predict_logits(joint_view).reshape(-1, 4, 4)
    labels = np.asarray(joint_view["labels"])
    metrics = accuracies_from_scores(answer_logits, rationale_logits, labels // 4, labels % 4)
    return metrics, answer_logits, rationale_logits
