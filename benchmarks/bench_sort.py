#!/usr/bin/env python
"""SOrT step time / BCE-only step time on the same batch (target <= 3.0).

One training step (forward, loss, backward, AdamW step) of a Pythia-sized-down VqaForClassification
on one fixed batch of <image, reasoning question> items, each with its reasoning question,
sub-questions and irrelevant questions (the paper's averages: ~2.6 sub- and ~6 irrelevant
questions). BCE-only is eq. 3 without L_CG; SOrT adds the batched Grad-CAM pass with
``create_graph=True`` and the contrastive loss. Both are timed side by side in one run,
alternating, median of ``--steps`` steps after warm-up. The last line printed is the ratio.

    python benchmarks/bench_sort.py [--items 16] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time


import torch

from hf_vcr.losses.gradcam import capture_activations
from hf_vcr.losses.sort import (
    contrastive_gradient_loss,
    gradcam_vectors,
    ground_truth_scores,
    role_bce_losses,
    sort_total_loss,
)
from hf_vcr.models.modeling_vqa import VqaConfig, VqaForClassification


def make_batch(items: int, subs: int, irrelevant: int, regions: int, dim: int, vocab: int, answers: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    per = 1 + subs + irrelevant
    q = items * per
    roles = torch.tensor(([0] + [1] * subs + [2] * irrelevant) * items)
    index = torch.arange(items).repeat_interleave(per)
    labels = torch.zeros(q, answers)
    labels[torch.arange(q), torch.randint(0, answers, (q,), generator=g)] = 1.0
    inputs = {
        "input_ids": torch.randint(5, vocab, (q, 14), generator=g),
        "attention_mask": torch.ones(q, 14, dtype=torch.long),
        "image_features": torch.randn(items, regions, dim, generator=g),
        "image_mask": torch.ones(items, regions, dtype=torch.long),
        "question_image_index": index,
    }
    return inputs, labels, roles, index


def step(model, optimizer, inputs, labels, roles, index, sort: bool) -> None:
    optimizer.zero_grad(set_to_none=True)
    with capture_activations(model, "fusion") as cap:
        out = model(**inputs)
    bce = role_bce_losses(out.logits, labels, roles)
    if sort:
        scores, valid = ground_truth_scores(out.logits, labels)
        g = gradcam_vectors(scores, cap.output, create_graph=True)
        l_cg = contrastive_gradient_loss(g, roles, index, valid)
    else:
        l_cg = out.logits.new_zeros(())
    sort_total_loss(l_cg, *bce).backward()
    optimizer.step()


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--subs", type=int, default=3)
    p.add_argument("--irrelevant", type=int, default=6)
    p.add_argument("--regions", type=int, default=36)
    p.add_argument("--feature_dim", type=int, default=512)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--answers", type=int, default=3129)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = VqaConfig(
        vocab_size=10000, word_embedding_dim=300, question_hidden_size=512, image_feature_dim=args.feature_dim,
        hidden_size=args.hidden, attention_hidden_size=512, classifier_hidden_size=2 * args.hidden, dropout=0.0,
        id2label={i: str(i) for i in range(args.answers)},
    )
    model = VqaForClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch = make_batch(args.items, args.subs, args.irrelevant, args.regions, args.feature_dim, 10000, args.answers)
    times = {"bce": [], "sort": []}
    for _ in range(args.warmup):
        step(model, optimizer, *batch, sort=False)
        step(model, optimizer, *batch, sort=True)
    for _ in range(args.steps):
        for name in ("bce", "sort"):
            t = time.perf_counter()
            step(model, optimizer, *batch, sort=name == "sort")
            times[name].append(time.perf_counter() - t)
    bce, sort = statistics.median(times["bce"]), statistics.median(times["sort"])
    q = batch[0]["input_ids"].shape[0]
    print(f"batch: {args.items} items, {q} questions (1 reasoning + {args.subs} sub + {args.irrelevant} irrelevant each); "
          f"hidden {args.hidden}, {args.answers} answers, {args.regions} regions x {args.feature_dim}; threads {args.threads}")
    print(f"BCE-only step: {bce * 1000:.1f} ms (median of {args.steps})")
    print(f"SOrT step:     {sort * 1000:.1f} ms (median of {args.steps})")
    ratio = sort / bce
    print(f"{ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
