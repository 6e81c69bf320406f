"""Capturing the activations ``A`` of a named module with a forward hook.

The hook is registered on the *unwrapped* model (``model.module`` under DDP), so the
activations are the same tensors that take part in the DDP forward; ``torch.autograd.grad``
with respect to them then needs no ``find_unused_parameters``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from accelerate.utils import extract_model_from_parallel

__all__ = ["capture_activations", "ActivationCapture"]


class ActivationCapture:
    """Holds the output of the hooked module from the most recent forward."""

    def __init__(self, module_name: str):
        self.module_name = module_name
        self.output: torch.Tensor | None = None

    def __call__(self, module, inputs, output):
        if isinstance(output, (tuple, list)):
            output = output[0]
        elif hasattr(output, "last_hidden_state"):
            output = output.last_hidden_state
        self.output = output


@contextmanager
def capture_activations(model: torch.nn.Module, module_name: str = "fusion") -> Iterator[ActivationCapture]:
    """``with capture_activations(model, "fusion") as cap: out = model(...); A = cap.output``."""
    base = extract_model_from_parallel(model, keep_torch_compile=False)  # DDP, DataParallel, DeepSpeed, compile
    try:
        module = base.get_submodule(module_name)
    except AttributeError:
        names = [n for n, _ in base.named_modules() if n and n.count(".") < 2]
        raise ValueError(f"the model has no module named {module_name!r}; some of its modules: {names[:20]}") from None
    cap = ActivationCapture(module_name)
    handle = module.register_forward_hook(cap)
    try:
        yield cap
    finally:
        handle.remove()
