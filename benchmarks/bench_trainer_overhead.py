#!/usr/bin/env python
"""VcrTrainer step time against a hand-written torch loop doing the same work.

Both run the same model initialisation, the same batches (same collator, same order),
forward, cross entropy, backward, gradient clipping at 1.0 and an AdamW step with a
linear schedule. Step times are taken between consecutive optimizer steps after a
warm-up, in alternating rounds so that machine noise hits both alike. Prints the ratio
(trainer / hand loop; target <= 1.05) on its last line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback, get_linear_schedule_with_warmup

from hf_vcr.data.collator import VcrCollator
from hf_vcr.data.synthetic_vcr import write_vcr_corpus
from hf_vcr.data.tokenization import build_word_tokenizer
from hf_vcr.data.vcr import load_vcr, tokenize_view
from hf_vcr.losses.multiple_choice import multiple_choice_loss
from hf_vcr.models import VcrConfig, VcrForMultipleChoice
from hf_vcr.trainers.vcr_components import corpus_words
from hf_vcr.trainers.vcr_config import VcrTrainingConfig
from hf_vcr.trainers.vcr_trainer import VcrTrainer


class StepTimes(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def make_model(vocab):
    torch.manual_seed(0)
    return VcrForMultipleChoice(VcrConfig.tiny(vocab_size=vocab))


def run_trainer(view, collator, vocab, steps, batch, out):
    model = make_model(vocab)
    args = VcrTrainingConfig(
        output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-3, warmup_steps=0,
        lr_scheduler_type="linear", max_grad_norm=1.0, save_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, seed=0, data_seed=0, optim="adamw_torch", weight_decay=0.0,
    )
    timer = StepTimes()
    VcrTrainer(model=model, args=args, train_dataset=view, data_collator=collator, callbacks=[timer]).train()
    return timer.times


def run_hand_loop(view, collator, vocab, steps, batch):
    model = make_model(vocab)
    model.train()
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(view, batch_size=batch, shuffle=True, collate_fn=collator, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    times, step = [], 0
    while step < steps:
        for inputs in loader:
            labels = inputs.pop("labels")
            loss = multiple_choice_loss(model(**inputs).logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            times.append(time.perf_counter())
            step += 1
            if step == steps:
                break
    return times


def step_times(stamps, warmup):
    return [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :])]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_trainer_")
    paths = write_vcr_corpus(work, n_train=600, n_val=8)
    ds = load_vcr("train", work, paths["images_dir"], cache_dir=os.path.join(work, "cache"))
    tokenizer = build_word_tokenizer([" ".join(corpus_words(ds))])
    view = tokenize_view(ds, tokenizer, "q2a", max_objects=8)
    collator = VcrCollator.for_model(VcrConfig.tiny(), tokenizer.pad_token_id)
    trainer_steps, hand_steps = [], []
    for r in range(args.rounds):
        trainer_steps += step_times(run_trainer(view, collator, len(tokenizer), args.steps, args.batch, os.path.join(work, f"t{r}")), args.warmup)
        hand_steps += step_times(run_hand_loop(view, collator, len(tokenizer), args.steps, args.batch), args.warmup)
    t, h = statistics.median(trainer_steps), statistics.median(hand_steps)
    print(f"VcrTrainer median step: {1000 * t:.1f} ms; hand-written loop median step: {1000 * h:.1f} ms "
          f"({len(trainer_steps)} steps each, batch {args.batch}, {args.rounds} alternating rounds)")
    print(f"step-time ratio (VcrTrainer / hand loop; target <= 1.05): {t / h:.3f}")


if __name__ == "__main__":
    main()
