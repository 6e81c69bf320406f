"""Losses shared by every multiple-choice method."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multiple_choice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over the choices: ``-log softmax(logits)[label]``, averaged over the batch.

    The standard VCR objective (Zellers et al., 2019, section 4); ARC's eq. 12-13 and
    eq. 15 use it for f_A, f_R and the teacher f_C. Labels of -100 are ignored; a batch with no label
    gives 0 (not the NaN of an empty mean), still connected to the graph.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, n_choices], got {tuple(logits.shape)}")
    per_item = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="none")
    return per_item.sum() / (labels != -100).sum().clamp(min=1)
