#!/usr/bin/env python
"""LSKD student benchmark: Q-Former-only training vs full fine-tuning, and cached vs recomputed vision outputs.

    python benchmarks/bench_lskd.py [--vision-hidden 384 --vision-layers 6 --steps 10]

1. Memory: the same BLIP-2 model (a vision encoder several times larger than the Q-Former, as in
   BLIP-2 where ViT-g has ~1B parameters and the Q-Former ~0.1B) trained with the LSKD recipe
   (vision frozen, Q-Former side trains) vs fully fine-tuned. Reported: trainable-parameter
   fraction, Adam optimizer-state bytes (measured from ``optimizer.state``), and peak memory of a
   training step (CUDA: ``max_memory_allocated``; CPU: peak RSS growth of a fresh process over the
   loaded model, each mode in its own subprocess).
2. Step time of the student with the frozen vision-encoder outputs cached (valid for un-augmented
   images) vs recomputed every step; both measured side by side, interleaved, in one process.

The last line printed is the measured ratio: step-time speed-up from caching.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


import torch


def build(args, freeze_vision: bool):
    from hf_vcr.models.configuration_lskd import LskdStudentConfig
    from hf_vcr.models.modeling_lskd import LskdStudentModel

    cfg = LskdStudentConfig(
        vision_config=dict(hidden_size=args.vision_hidden, intermediate_size=4 * args.vision_hidden, num_hidden_layers=args.vision_layers,
                           num_attention_heads=max(1, args.vision_hidden // 64), image_size=args.image_size, patch_size=args.patch_size,
                           initializer_range=0.02),
        qformer_config=dict(hidden_size=args.qformer_hidden, num_hidden_layers=args.qformer_layers, num_attention_heads=max(1, args.qformer_hidden // 64),
                            intermediate_size=4 * args.qformer_hidden, vocab_size=1000, max_position_embeddings=64,
                            cross_attention_frequency=1, use_qformer_text_input=True),
        text_config=dict(model_type="opt", vocab_size=1000, hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2),
        num_query_tokens=args.queries, image_text_hidden_size=128, freeze_vision=freeze_vision, decoder_start_token_id=4,
    )
    torch.manual_seed(0)
    return LskdStudentModel(cfg)


def batch(args, device):
    g = torch.Generator().manual_seed(0)
    px = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(device)
    ids = torch.randint(5, 1000, (args.batch_size, args.text_len), generator=g).to(device)
    return px, ids, torch.ones_like(ids)


def train_step(model, opt, px, ids, mask, image_embeds=None):
    from hf_vcr.losses.lskd import itc_loss, itg_loss, itm_loss

    if image_embeds is None:
        image_embeds = model.encode_image(px)
    out = model(image_embeds=image_embeds, input_ids=ids, attention_mask=mask, stage1=True)
    loss = itc_loss(out.image_feats, out.text_feats, out.temperature) + itm_loss(out.itm_logits, out.itm_labels) + itg_loss(
        out.itg_logits, out.decoder_input_ids, out.decoder_attention_mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_mode(args, mode: str) -> dict:
    """One mode ('student' or 'full') in this process: trainable fraction, optimizer-state bytes, peak memory."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(args, freeze_vision=(mode == "student")).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    px, ids, mask = batch(args, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    for _ in range(2):
        train_step(model, opt, px, ids, mask)
    state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"mode": mode, "device": device.type, "total_params": total, "trainable_params": sum(p.numel() for p in params),
            "trainable_fraction": sum(p.numel() for p in params) / total, "optimizer_state_MiB": state_bytes / 2**20,
            "peak_step_memory_MiB": peak / 2**20}


def step_times(args) -> dict:
    """Interleaved timing of cached vs recomputed vision outputs (same model, same batch)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(args, freeze_vision=True).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    px, ids, mask = batch(args, device)
    with torch.no_grad():
        cached = model.encode_image(px)
    times = {"recompute": [], "cached": []}
    for i in range(args.steps + 2):
        for mode in ("recompute", "cached"):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            train_step(model, opt, px, ids, mask, image_embeds=cached if mode == "cached" else None)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:  # warm-up
                times[mode].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"step_s_recompute": med["recompute"], "step_s_cached": med["cached"], "speedup": med["recompute"] / med["cached"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vision-hidden", type=int, default=384)
    p.add_argument("--vision-layers", type=int, default=6)
    p.add_argument("--qformer-hidden", type=int, default=128)
    p.add_argument("--qformer-layers", type=int, default=2)
    p.add_argument("--queries", type=int, default=8)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--text-len", type=int, default=24)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only-memory", choices=["student", "full"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only_memory:
        print(json.dumps(memory_mode(args, args.only_memory)))
        return
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    mem = {}
    for mode in ("student", "full"):  # fresh processes, so the peak of one does not hide the other
        out = subprocess.run([sys.executable, os.path.abspath(__file__), *passthrough, "--only-memory", mode],
                             capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        mem[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    s, f = mem["student"], mem["full"]
    print(f"parameters: {s['total_params']:,} total; trainable: student {s['trainable_params']:,} ({100 * s['trainable_fraction']:.1f}%) "
          f"vs full {f['trainable_params']:,} ({100 * f['trainable_fraction']:.1f}%)")
    print(f"Adam optimizer state: student {s['optimizer_state_MiB']:.1f} MiB vs full {f['optimizer_state_MiB']:.1f} MiB "
          f"({f['optimizer_state_MiB'] / s['optimizer_state_MiB']:.2f}x)")
    print(f"peak training-step memory ({s['device']}): student {s['peak_step_memory_MiB']:.1f} MiB vs full {f['peak_step_memory_MiB']:.1f} MiB "
          f"({f['peak_step_memory_MiB'] / max(s['peak_step_memory_MiB'], 1e-9):.2f}x)")
    t = step_times(args)
    print(f"student step time: recompute vision {1000 * t['step_s_recompute']:.1f} ms vs cached vision outputs {1000 * t['step_s_cached']:.1f} ms")
    print(json.dumps({"memory": mem, "timing": t}))
    print(f"speedup of a student step with cached frozen vision outputs vs recomputing them: {t['speedup']:.2f}x")


if __name__ == "__main__":
    main()
