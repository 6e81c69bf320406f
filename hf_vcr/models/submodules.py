"""Building the transformers sub-models (text encoders, vision backbones) inside hf_vcr models."""

from __future__ import annotations

import copy

from transformers import AutoModel, PretrainedConfig, PreTrainedModel


def build_submodel(config: PretrainedConfig, attn_implementation: str | None = None) -> PreTrainedModel:
    """``AutoModel.from_config(config)``, but constructed directly.

    ``from_config`` enters ``deepspeed.zero.Init`` when ZeRO-3 is configured, which partitions the
    sub-model's parameters before its own weight initialisation runs (and breaks it, e.g. BERT's
    padding row). Built directly, the parameters stay whole until DeepSpeed's engine partitions
    the complete model, which is what ZeRO-3 needs for a model assembled from parts.
    """
    model_class = AutoModel._model_mapping[type(config)]
    config = copy.deepcopy(config)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return model_class(config)
