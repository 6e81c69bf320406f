"""Metrics: pure functions per task, and thin local ``evaluate`` modules on top of them.

``load_metric(name)`` loads ``hf_vcr/metrics/modules/<name>/<name>.py`` with
``evaluate.load`` from the local path, so it works offline.
"""

from __future__ import annotations

import os

_MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules")


def metric_path(name: str) -> str:
    path = os.path.join(_MODULES, name)
    if not os.path.isfile(os.path.join(path, f"{name}.py")):
        available = sorted(os.listdir(_MODULES)) if os.path.isdir(_MODULES) else []
        raise ValueError(f"no hf_vcr metric module {name!r}; available: {available}")
    return path


def load_metric(name: str, **kwargs):
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)
