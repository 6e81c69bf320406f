#!/usr/bin/env python
"""EIGV step time / ERM step time on the same batch, with N negatives per anchor.

An EIGV step runs ``2 + N`` views (anchor, positive, N negatives) of every example through the backbone
(in one batched forward) plus the grounding indicator twice; an ERM step runs 1 view. The target is
``ratio <= 1.1 * (2 + N)``: the extra views cost no more than their forward passes.

    python benchmarks/bench_eigv.py [--batch 16 --negatives 4 --clips 16 --visual-dim 4096 --hidden 128 --repeats 10]

Both steps (forward + backward + optimizer step) are timed side by side, interleaved, in one run; the
last line printed is ``ratio=<EIGV/ERM> target<=<1.1*(2+N)> ...``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


import torch

from hf_vcr.models.configuration_videoqa import TINY_TEXT_CONFIG, VideoQaConfig
from hf_vcr.models.modeling_videoqa import VideoQaForMultipleChoice
from hf_vcr.trainers.eigv_config import EigvConfig
from hf_vcr.trainers.eigv_trainer import ClipMemoryBank, eigv_views_step


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--negatives", type=int, default=4, help="N per anchor: ceil(N/2) video + floor(N/2) question negatives")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--visual-dim", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--choices", type=int, default=5)
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    config = VideoQaConfig(
        text_config=dict(TINY_TEXT_CONFIG, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
        visual_dim=a.visual_dim, num_clips=a.clips, hidden_size=a.hidden, num_fusion_layers=a.layers,
        num_attention_heads=4, intermediate_size=2 * a.hidden, dropout=0.0, num_choices=a.choices,
    )
    model = VideoQaForMultipleChoice(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    batch = {
        "clip_features": torch.randn(a.batch, a.clips, a.visual_dim, generator=g),
        "input_ids": torch.randint(5, 120, (a.batch, a.choices, a.length), generator=g),
        "attention_mask": torch.ones(a.batch, a.choices, a.length, dtype=torch.long),
        "labels": torch.randint(0, a.choices, (a.batch,), generator=g),
        "video_index": torch.arange(a.batch),
    }
    n_vid, n_q = (a.negatives + 1) // 2, a.negatives // 2
    with tempfile.TemporaryDirectory() as tmp:
        args = EigvConfig(output_dir=tmp, num_video_negatives=n_vid, num_question_negatives=n_q, report_to="none", use_cpu=True)
    bank = ClipMemoryBank(args.memory_bank_size)
    erm_inputs = {k: v for k, v in batch.items() if k != "video_index"}

    def erm_step():
        opt.zero_grad(set_to_none=True)
        model(**erm_inputs).loss.backward()
        opt.step()

    def eigv_step():
        opt.zero_grad(set_to_none=True)
        eigv_views_step(model, batch, args, bank)["loss"].backward()
        opt.step()

    for _ in range(2):  # warm-up
        erm_step()
        eigv_step()
    erm_t, eigv_t = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        erm_step()
        erm_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        eigv_step()
        eigv_t.append(time.perf_counter() - t0)
    erm_s, eigv_s = statistics.median(erm_t), statistics.median(eigv_t)
    ratio = eigv_s / erm_s
    target = 1.1 * (2 + a.negatives)
    print(f"batch={a.batch} clips={a.clips} visual_dim={a.visual_dim} hidden={a.hidden} choices={a.choices} N={a.negatives} "
          f"(video {n_vid}, question {n_q}) erm_step={erm_s * 1000:.1f}ms eigv_step={eigv_s * 1000:.1f}ms")
    print(f"ratio={ratio:.2f} target<={target:.2f} views={2 + a.negatives} {'OK' if ratio <= target else 'ABOVE TARGET'}")
    return ratio


if __name__ == "__main__":
    main()
