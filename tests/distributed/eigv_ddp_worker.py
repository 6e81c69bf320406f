"""Worker for tests/distributed/test_eigv_ddp.py: trains the tiny VideoQA model with EigvTrainer for a few
steps and saves every rank's parameters. Run as ``torchrun --standalone --nproc_per_node 2 eigv_ddp_worker.py
DATA_DIR OUT_DIR BATCH_PER_DEVICE OBJECTIVE [OBJECTIVE ...]`` or call :func:`run` in one process."""

import os
import sys

import torch


from hf_vcr.data.tokenization import build_word_tokenizer
from hf_vcr.data.videoqa import ClipFeatureStore, VideoQaCollator, load_nextqa
from hf_vcr.models import VideoQaConfig, VideoQaForMultipleChoice
from hf_vcr.models.configuration_videoqa import TINY_TEXT_CONFIG
from hf_vcr.trainers.eigv_config import EigvConfig
from hf_vcr.trainers.eigv_trainer import EigvTrainer

STEPS = 3


def run(data_dir: str, out_dir: str, batch: int, objective: str) -> str:
    torch.set_num_threads(1)
    store = ClipFeatureStore.nextqa(os.path.join(data_dir, "vid_feat", "app_mot_train.h5"))
    train = load_nextqa(os.path.join(data_dir, "train.csv"), features=store, cache_dir=os.path.join(out_dir, "cache"))
    tok = build_word_tokenizer(list(train["question"]) + [o for opts in train["options"] for o in opts])
    torch.manual_seed(0)
    text = dict(TINY_TEXT_CONFIG, vocab_size=len(tok), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = VideoQaForMultipleChoice(VideoQaConfig.tiny(visual_dim=store.dim, num_clips=store.num_clips, text_config=text))
    args = EigvConfig(
        output_dir=os.path.join(out_dir, objective), objective=objective, max_steps=STEPS, per_device_train_batch_size=batch,
        optim="sgd", learning_rate=0.5, lr_scheduler_type="constant", save_strategy="no", report_to="none", use_cpu=True,
        seed=0, logging_steps=1, dataloader_num_workers=0, memory_bank_size=256,
    )
    trainer = EigvTrainer(model=model, args=args, train_dataset=train, data_collator=VideoQaCollator(tok, store))
    trainer.train()
    rank = trainer.args.process_index
    path = os.path.join(out_dir, f"{objective}_world{trainer.args.world_size}_rank{rank}.pt")
    torch.save({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}, path)
    return path


if __name__ == "__main__":
    data_dir, out_dir, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for objective in sys.argv[4:]:
        run(data_dir, out_dir, batch, objective)
    from hf_vcr.utils.distributed import end_distributed

    end_distributed()
