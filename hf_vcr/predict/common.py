"""What every ``hf-vcr predict <method>`` shares: the device, batched inference with a progress bar,
and the arguments that say how the saved models read their data."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from datasets import Dataset


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("inference")
    g.add_argument("--batch_size", type=int, default=32, help="items per forward pass (default 32)")
    g.add_argument("--device", default=None, help="cuda, cuda:1, cpu, ... (default: cuda when there is one, else cpu)")
    g.add_argument("--max_items", type=int, default=None, help="predict only the first N items (debugging)")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")


def add_vcr_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data (as the models were trained: see their training config)")
    g.add_argument("--annotations", required=True, help="VCR-format jsonl (val.jsonl, test.jsonl: labels optional)")
    g.add_argument("--images-dir", "--images_dir", dest="images_dir", default=None,
                   help="the vcr1images folder (needed by models that read pixels)")
    g.add_argument("--region-features-dir", "--region_features_dir", dest="region_features_dir", default=None,
                   help="<img_fn>.npy region features, for models trained with visual_source=features")
    g.add_argument("--max_length", type=int, default=64, help="tokens per (query, response) pair, as in training (default 64)")
    g.add_argument("--reference_style", default="r2c", choices=("r2c", "index"), help="object references, as in training")
    g.add_argument("--tokenizer", default=None, help="tokenizer name or path (default: the one saved with the model)")
    g.add_argument("--cache_dir", default=None, help="Arrow cache for the loaded annotations")


@torch.no_grad()
def batched_outputs(model, dataset: Dataset, collator, batch_size: int = 32, device="cpu", *,
                    keys=("logits",), forward=None, desc: str | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Run ``model`` in evaluation mode over ``dataset`` in order and stack the output tensors named by ``keys``.

    ``forward(model, batch)`` replaces ``model(**batch)`` (e.g. to pass a coupling mode). Labels never reach
    the model: the items may be unlabelled. The progress bar goes to stderr, named by ``desc``.
    """
    from tqdm.auto import tqdm

    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for batch in tqdm(loader, desc=desc, disable=not progress, file=sys.stderr, unit="batch", dynamic_ncols=True):
        batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v) and not k.endswith("labels")}
        result = forward(model, batch) if forward is not None else model(**batch)
        for k in keys:
            out[k].append(result[k].float().cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros((0, 4), dtype=np.float32) for k, v in out.items()}


def predict_logits(model, view: Dataset, collator, batch_size: int = 32, device="cpu", *, desc: str | None = None,
                   progress: bool = False) -> np.ndarray:
    """Logits ``[N, C]`` of a multiple-choice scorer on a tokenized view, in order."""
    return batched_outputs(model, view, collator, batch_size, device, desc=desc, progress=progress)["logits"]


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
