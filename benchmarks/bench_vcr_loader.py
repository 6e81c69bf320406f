#!/usr/bin/env python
"""load_vcr + tokenization of a 200,000-item VCR-format file, against a bare json.loads loop.

Prints the throughput ratio (json.loads time / load_vcr+tokenize time; target >= 0.5) on
its last line, and the time to reload both from the Arrow cache (target < 2 s).

    python benchmarks/bench_vcr_loader.py [--items 200000] [--num-proc 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time


from hf_vcr.data.synthetic_vcr import write_vcr_corpus
from hf_vcr.data.vcr import load_vcr, tokenize_view
from hf_vcr.trainers.vcr_components import corpus_words
from hf_vcr.data.tokenization import build_word_tokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument("--view", default="q2a")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_vcr_loader_")
    try:
        t = time.perf_counter()
        write_vcr_corpus(work, n_train=args.items, n_val=1, with_images=False)
        print(f"generated {args.items} items in {time.perf_counter() - t:.1f}s")
        path = os.path.join(work, "train.jsonl")
        tokenizer = build_word_tokenizer([" ".join(corpus_words(load_vcr("val", work, cache_dir=os.path.join(work, "c0"))))])

        t = time.perf_counter()
        with open(path, encoding="utf-8") as f:
            n = sum(1 for line in f if json.loads(line))
        t_json = time.perf_counter() - t

        cache = os.path.join(work, "cache")
        t = time.perf_counter()
        ds = load_vcr("train", work, cache_dir=cache)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        view = tokenize_view(ds, tokenizer, args.view, num_proc=args.num_proc)
        t_tok = time.perf_counter() - t
        assert len(view) == n == args.items

        t = time.perf_counter()
        ds2 = load_vcr("train", work, cache_dir=cache)
        view2 = tokenize_view(ds2, tokenizer, args.view, num_proc=args.num_proc)
        t_reload = time.perf_counter() - t
        assert len(view2) == n

        ours = t_load + t_tok
        print(f"json.loads loop: {t_json:.2f}s ({n / t_json:,.0f} items/s)")
        print(f"load_vcr: {t_load:.2f}s, tokenize_view({args.view}): {t_tok:.2f}s -> {n / ours:,.0f} items/s")
        print(f"reload from the Arrow cache (load_vcr + tokenize_view): {t_reload:.2f}s (target < 2 s)")
        print(f"throughput ratio (load_vcr + tokenization vs json.loads; target >= 0.5): {t_json / ours:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
