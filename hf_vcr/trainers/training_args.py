"""``HfVcrTrainingArguments``: what the training configs of all seven methods share beyond ``TrainingArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class HfVcrTrainingArguments(TrainingArguments):
    """The base of every ``<method>_config.py``.

    A flow started on an ``output_dir`` that holds a run refuses when that run's arguments differ (and does
    nothing when it finished with the same ones): ``overwrite_output_dir`` is the user's explicit decision to
    replace it (transformers 5 dropped the field).
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace a run with other arguments found in output_dir (default: refuse, naming the fields that differ)."},
    )
