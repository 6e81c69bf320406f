"""What every hf_vcr trainer shares: per-component loss logging, checkpoints that are
atomic and resumable, and a model card written beside the saved model."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import torch
from transformers import Trainer

from ..utils.checkpoints import find_resumable_checkpoint, mark_complete


class HfVcrTrainer(Trainer):
    """A ``Trainer`` whose ``compute_loss`` returns a per-batch mean.

    Subclasses compose losses in ``compute_loss`` and call :meth:`record` with each
    component; the components are averaged over the logging interval (and across
    processes) and logged beside ``loss`` as ``<name>`` (train) or ``eval_<name>``.
    """

    # The losses are per-batch means: let Trainer divide them by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._component_logs: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    # ---------------------------------------------------------------- logging
    def record(self, **components: torch.Tensor | float) -> None:
        """Store loss components of the current step for the next ``log`` call."""
        mode = "train" if self.model.training else "eval"
        for name, value in components.items():
            if value is None:
                continue
            t = value.detach().float().reshape(()) if torch.is_tensor(value) else torch.tensor(float(value))
            t = self.accelerator.gather(t.to(self.accelerator.device)).mean()
            self._component_logs[mode][name].append(t.item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self._component_logs[mode].items():
            if values:
                logs[prefix + name] = sum(values) / len(values)
        self._component_logs[mode].clear()
        super().log(logs, start_time)

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        # push_to_hub() calls this: keep the method's card rendered from model_cards/ when there is one
        card = os.path.join(self.args.output_dir, "README.md")
        if os.path.isfile(card):
            with open(card, encoding="utf-8") as f:
                if "hf_vcr" in f.read():
                    return
        super().create_model_card(*args, **kwargs)

    # ------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            mark_complete(os.path.join(run_dir, f"checkpoint-{self.state.global_step}"))

    def train_resuming(self, **kwargs: Any):
        """``train()`` that resumes from the newest complete checkpoint in ``output_dir``, if any."""
        checkpoint = find_resumable_checkpoint(self.args.output_dir, remove_incomplete=self.is_world_process_zero())
        if checkpoint is not None and self.is_world_process_zero():
            print(f"hf_vcr: resuming from {checkpoint}", flush=True)
        return self.train(resume_from_checkpoint=checkpoint, **kwargs)
