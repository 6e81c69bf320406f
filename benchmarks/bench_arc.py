#!/usr/bin/env python
"""ARC stage-2 step time: cached teacher vs. teacher run live, relative to f_A + f_R trained with cross entropy alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_arc.py [--items 256 --batch 32 --rounds 12 --backbone vcr]

All three variants run on the same pre-collated batches (data loading excluded) with the same
models, interleaved round by round (side by side), and the median step time (forward, loss,
backward, optimizer step) of each is compared. Targets: cached / CE <= 1.10; live / CE shows
what the cache saves. The last line prints both ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time



def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--backbone", default="vcr", choices=["vcr", "visualbert"])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    import hf_vcr  # noqa: F401
    from hf_vcr.data.collator import VcrCollator
    from hf_vcr.data.synthetic_vcr import write_vcr_corpus
    from hf_vcr.data.tokenization import build_word_tokenizer
    from hf_vcr.data.vcr import load_vcr, tokenize_view
    from hf_vcr.losses.multiple_choice import multiple_choice_loss
    from hf_vcr.trainers.arc_config import ArcConfig
    from hf_vcr.trainers.arc_trainer import ArcModel, ArcTrainer, cache_columns, compute_teacher_outputs
    from hf_vcr.trainers.coupling_data import MultiViewCollator, build_scorer, merge_views
    from hf_vcr.trainers.vcr_components import corpus_words
    from hf_vcr.trainers.vcr_config import VcrModelArguments

    tmp = tempfile.mkdtemp(prefix="bench_arc_")
    paths = write_vcr_corpus(os.path.join(tmp, "data"), n_train=a.items, n_val=8)
    train = load_vcr("train", paths["annotations_dir"], paths["images_dir"], cache_dir=os.path.join(tmp, "cache"))
    tok = build_word_tokenizer([" ".join(corpus_words(train))])
    build = lambda: build_scorer(a.backbone, VcrModelArguments(), tok)  # noqa: E731
    torch.manual_seed(0)
    teacher = build().eval()
    base = VcrCollator.for_model(teacher.config, pad_token_id=tok.pad_token_id)
    kw = dict(max_length=64, max_objects=teacher.config.max_objects)
    views = {n: tokenize_view(train, tok, n, **kw) for n in ("q2a", "qa2r", "qr2a")}
    ids, logits, feats = compute_teacher_outputs(teacher, views["qr2a"], base, batch_size=64)
    cache = {k: (logits[i].numpy(), feats[i].numpy()) for i, k in enumerate(ids)}
    cached_ds = merge_views({"a": views["q2a"], "r": views["qa2r"]}, extra=cache_columns(cache, ids, "bench"))
    live_ds = merge_views({"a": views["q2a"], "r": views["qa2r"], "c": views["qr2a"]})
    c_cached = MultiViewCollator(base, ("a", "r"), ("teacher_logits", "teacher_feature"))
    c_live = MultiViewCollator(base, ("a", "r", "c"))
    starts = list(range(0, a.items - a.batch + 1, a.batch))
    batches_cached = [c_cached([cached_ds[i] for i in range(s, s + a.batch)]) for s in starts]
    batches_live = [c_live([live_ds[i] for i in range(s, s + a.batch)]) for s in starts]

    model = ArcModel(build(), build()).train()
    args = ArcConfig(output_dir=os.path.join(tmp, "out"), report_to="none", use_cpu=True, disable_tqdm=True)
    trainer_cached = ArcTrainer(model=model, args=args, data_collator=c_cached)
    trainer_live = ArcTrainer(model=model, args=args, teacher_model=teacher, data_collator=c_live)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step_ce(batch):
        out = model(**{k: v for k, v in batch.items() if not k.startswith("teacher_")})
        return multiple_choice_loss(out["answer_logits"], batch["a_labels"]) + multiple_choice_loss(out["rationale_logits"], batch["r_labels"])

    variants = {
        "ce": (step_ce, batches_cached),
        "cached": (lambda b: trainer_cached.compute_loss(model, dict(b)), batches_cached),
        "live": (lambda b: trainer_live.compute_loss(model, dict(b)), batches_live),
    }
    times = {k: [] for k in variants}
    for r in range(a.rounds + 1):
        for name, (fn, batches) in variants.items():
            batch = batches[r % len(batches)]
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            fn(batch).backward()
            optimizer.step()
            dt = time.perf_counter() - t0
            if r > 0:  # round 0 warms up
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:>7}: median step {1000 * v:.1f} ms over {len(times[k])} steps (batch {a.batch}, {a.backbone})")
    print(f"stage-2 step time ratio: cached teacher / CE alone = {med['cached'] / med['ce']:.3f} (target <= 1.10); "
          f"live teacher / CE alone = {med['live'] / med['ce']:.3f}")


if __name__ == "__main__":
    main()
