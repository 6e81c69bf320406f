"""QFormerDistillTrainer: distils the LSKD corpus into a BLIP-2 student by training only its Q-Former.

``objective="stage1"``: ``LskdStudentModel`` with ITC + ITM + ITG (BLIP-2 stage 1);
``objective="generative"``: ``Blip2ForConditionalGeneration`` with the language model frozen,
trained on the LM loss of ``"Answer: ... Rationale: ..."``.

The vision encoder is frozen; with ``cache_vision_outputs`` (un-augmented images only) its
outputs are computed once per example and reused.
"""

from __future__ import annotations

import torch

from ..losses.lskd import itc_loss, itg_loss, itg_target_count, itm_loss
from .base import HfVcrTrainer


def freeze_for_generative(model) -> None:
    """Blip2ForConditionalGeneration: train only the Q-Former, query tokens and the language projection."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(("qformer.", "query_tokens", "language_projection.")) or "lora_" in name)
    model.vision_model.eval()


class QFormerDistillTrainer(HfVcrTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._vision_cache: dict[int, torch.Tensor] = {}
        if self.args.cache_vision_outputs and self.args.augment_regions:
            raise ValueError("cache_vision_outputs needs augment_regions=False")

    def _unwrapped(self, model):
        return self.accelerator.unwrap_model(model)

    @torch.no_grad()
    def _vision_outputs(self, model, pixel_values: torch.Tensor, example_ids: torch.Tensor | None) -> torch.Tensor:
        """Frozen vision-encoder outputs, from the per-example cache when enabled."""
        base = self._unwrapped(model)
        if not self.args.cache_vision_outputs or example_ids is None:
            return base.encode_image(pixel_values)
        ids = example_ids.tolist()
        missing = [i for i, e in enumerate(ids) if e not in self._vision_cache]
        if missing:
            fresh = base.encode_image(pixel_values[missing])
            for j, i in enumerate(missing):
                self._vision_cache[ids[i]] = fresh[j].detach()
        return torch.stack([self._vision_cache[e] for e in ids]).to(pixel_values.device)

    def _global_token_count(self, local_count: torch.Tensor) -> torch.Tensor:
        """A token-mean loss's denominator: the predicted tokens of the whole batch over all processes, divided by
        the number of processes (DDP and DeepSpeed average the processes' gradients), so N processes equal one;
        a per-process mean would weight the tokens of a process with short texts more."""
        count = local_count.detach().float()
        n = self.accelerator.num_processes
        if n > 1:
            count = self.accelerator.reduce(count, reduction="sum")
        return count.clamp_min(1.0) / n

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        example_ids = inputs.pop("example_ids", None)
        args = self.args
        if args.objective == "generative":
            labels = inputs["labels"]
            # the causal-LM loss of transformers sums over tokens and divides by num_items_in_batch when given
            out = model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        labels=labels, num_items_in_batch=self._global_token_count((labels[:, 1:] != -100).sum()))
            self.record(loss_lm=out.loss)
            return (out.loss, out) if return_outputs else out.loss

        image_embeds = self._vision_outputs(model, inputs["pixel_values"], example_ids)
        out = model(
            image_embeds=image_embeds,
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            stage1=True,
            compute_itm=args.itm_weight > 0,
            compute_itg=args.itg_weight > 0,
        )
        loss = 0.0
        parts = {}
        if args.itc_weight > 0:
            parts["loss_itc"] = itc_loss(out.image_feats, out.text_feats, out.temperature, label_smoothing=args.itc_label_smoothing,
                                         gather_with_grad=args.itc_gather_with_grad)
            loss = loss + args.itc_weight * parts["loss_itc"]
        if args.itm_weight > 0:
            parts["loss_itm"] = itm_loss(out.itm_logits, out.itm_labels)
            loss = loss + args.itm_weight * parts["loss_itm"]
            with torch.no_grad():
                parts["itm_accuracy"] = (out.itm_logits.argmax(-1) == out.itm_labels).float().mean()
        if args.itg_weight > 0:
            parts["loss_itg"] = itg_loss(
                out.itg_logits, out.decoder_input_ids, out.decoder_attention_mask, label_smoothing=args.itg_label_smoothing,
                num_targets=self._global_token_count(itg_target_count(out.decoder_input_ids, out.decoder_attention_mask)),
            )
            loss = loss + args.itg_weight * parts["loss_itg"]
        self.record(**parts, temperature=out.temperature)
        return (loss, out) if return_outputs else loss
