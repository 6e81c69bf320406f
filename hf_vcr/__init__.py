"""hf_vcr: visual commonsense reasoning methods for the Hugging Face ecosystem.

Every hf_vcr model is registered with the transformers Auto classes as soon as transformers is
imported (before or after ``import hf_vcr``), so ``import hf_vcr`` then
``AutoModel.from_pretrained(dir)`` works without ``trust_remote_code``. The registration is lazy
because ``hf_vcr.models`` needs torch and transformers (seconds to import), which the
``hf-vcr evaluate`` commands and the data loaders never touch.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


def _register_models() -> None:
    importlib.import_module("hf_vcr.models")


class _RegisterWhenTransformersLoads(importlib.abc.MetaPathFinder):
    """Finds ``transformers`` with the other finders and wraps its loader, so that the hf_vcr models register
    right after transformers itself is executed; leaves ``sys.meta_path`` once that has happened. (A mere
    ``importlib.util.find_spec("transformers")``, as libraries do to probe for it, executes nothing and changes
    nothing.)"""

    def __init__(self):
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "transformers" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _register_models()

        spec.loader.exec_module = exec_then_register  # an attribute of this spec's own loader instance
        return spec


if "transformers" in sys.modules:
    _register_models()
elif not any(isinstance(f, _RegisterWhenTransformersLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTransformersLoads())


def __getattr__(name: str):
    # a subpackage or module (``hf_vcr.models``, ``hf_vcr.metrics``, ...) on first attribute access
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
