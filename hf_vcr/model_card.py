"""Model cards rendered from the Jinja templates in ``model_cards/`` through huggingface_hub."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any, Mapping, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .utils.checkpoints import atomic_write_text

# The templates ship as the package data of hf_vcr.model_cards (the top-level model_cards/ folder).
_REPO_TEMPLATES = str(resources.files("hf_vcr.model_cards"))
DEFAULT_TEMPLATE = "model_card.md.j2"


def template_path(name: str = DEFAULT_TEMPLATE) -> str:
    path = os.path.join(_REPO_TEMPLATES, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model card template not found: {path}")
    return path


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return round(value, 4)
    return value if isinstance(value, (int, str, bool, type(None))) else str(value)


def train_command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line that trained a model, for its card: ``python scripts/<script> <argv>`` (``sys.argv`` by default),
    with every secret (``--hub_token``, any ``*token*``/``*key*``/``*secret*``/``*password*`` option, any known token
    value) replaced by ``<redacted>`` (:func:`hf_vcr.utils.secrets.redact_argv`)."""
    import shlex
    import sys

    from .utils.secrets import redact_argv

    return f"python scripts/{script} " + " ".join(shlex.quote(a) for a in redact_argv(sys.argv[1:] if argv is None else argv))


def render_model_card(
    *,
    model_name: str,
    method: str,
    method_summary: str,
    paper_title: str,
    architecture: str,
    task_type: str,
    dataset_name: str,
    train_command: str,
    paper_url: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    datasets_used: list[str] | None = None,
    dataset_id: str | None = None,
    eval_dataset_name: str | None = None,
    base_model: str | None = None,
    sub_models: Mapping[str, str] | None = None,
    load_path: str | None = None,
    extra_load: str | None = None,
    tags: list[str] | None = None,
    template: str = DEFAULT_TEMPLATE,
) -> ModelCard:
    """A ModelCard whose YAML carries ``model-index`` eval results built from ``metrics``."""
    metrics = {k: _plain(v) for k, v in (metrics or {}).items() if isinstance(_plain(v), (int, float))}
    eval_results = [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset_id or eval_dataset_name or dataset_name,
            dataset_name=eval_dataset_name or dataset_name,  # the scores are on the evaluation data, named as it is
            metric_type=name,
            metric_name=name,
            metric_value=value,
        )
        for name, value in metrics.items()
    ] or None
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        tags=["hf_vcr", method.lower().replace(" ", "-")] + list(tags or []),
        datasets=[dataset_id] if dataset_id else None,
        base_model=base_model,
        eval_results=eval_results,
    )
    return ModelCard.from_template(
        card_data,
        template_path=template_path(template),
        model_name=model_name,
        method=method,
        method_summary=method_summary,
        paper_title=paper_title,
        paper_url=paper_url,
        architecture=architecture,
        base_model=base_model,
        sub_models=dict(sub_models or {}),
        datasets_used=datasets_used or [dataset_name],
        eval_dataset=eval_dataset_name or dataset_name,
        hyperparameters={k: _plain(v) for k, v in (hyperparameters or {}).items()},
        results=metrics,
        load_path=load_path or model_name,
        extra_load=extra_load,
        train_command=train_command,
    )


def write_model_card(output_dir: str, **kwargs) -> str:
    """Render a card (see :func:`render_model_card`) to ``output_dir/README.md`` atomically."""
    from .utils.secrets import scrub

    card = render_model_card(**kwargs)
    path = os.path.join(output_dir, "README.md")
    atomic_write_text(path, scrub(str(card)))  # a token in any field (a path, a hyper-parameter) never reaches a card
    return path
