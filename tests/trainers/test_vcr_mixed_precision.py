"""bf16 autocast (the mixed precision a CPU has) trains VcrForMultipleChoice with finite losses;
fp16 and TF32 are GPU features exercised by the same flags on a GPU."""

from __future__ import annotations

import math

import torch

from hf_vcr.data.collator import VcrCollator
from hf_vcr.data.tokenization import build_word_tokenizer
from hf_vcr.data.vcr import load_vcr, tokenize_view
from hf_vcr.models import VcrConfig, VcrForMultipleChoice
from hf_vcr.trainers.vcr_components import corpus_words
from hf_vcr.trainers.vcr_config import VcrTrainingConfig
from hf_vcr.trainers.vcr_trainer import VcrTrainer


def test_bf16_training_step(synthetic_vcr, tmp_path):
    ds = load_vcr("train", synthetic_vcr["annotations_dir"], synthetic_vcr["images_dir"]).select(range(32))
    tok = build_word_tokenizer([" ".join(corpus_words(ds))])
    torch.manual_seed(0)
    model = VcrForMultipleChoice(VcrConfig.tiny(vocab_size=len(tok)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = VcrTrainingConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8, bf16=True, use_cpu=True,
                             save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=True)
    trainer = VcrTrainer(model=model, args=args, train_dataset=tokenize_view(ds, tok, "q2a", max_objects=8),
                         data_collator=VcrCollator.for_model(model.config, tok.pad_token_id))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(l) for l in losses)
    assert model.dtype == torch.float32  # autocast: master weights stay fp32
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
