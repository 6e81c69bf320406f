"""Worker for tests/distributed/test_arc_ddp.py and test_joint_ddp.py: a few SGD steps of ARC stage 2
(cached teacher) and of joint coupling (softmax) on tiny dropout-free text-only scorers; saves every rank's
parameters. Run as ``torchrun --standalone --nproc_per_node 2 arc_joint_ddp_worker.py DATA_DIR OUT_DIR BATCH``
or call :func:`run` in one process."""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hf_vcr.data.collator import VcrCollator  # noqa: E402
from hf_vcr.data.synthetic_vcr import write_vcr_corpus  # noqa: E402
from hf_vcr.data.tokenization import build_word_tokenizer  # noqa: E402
from hf_vcr.data.vcr import load_vcr, tokenize_view  # noqa: E402
from hf_vcr.models import VcrConfig, VcrForMultipleChoice  # noqa: E402
from hf_vcr.trainers.arc_config import ArcConfig  # noqa: E402
from hf_vcr.trainers.arc_trainer import ArcModel, ArcTrainer, cache_columns, compute_teacher_outputs  # noqa: E402
from hf_vcr.trainers.coupling_data import MultiViewCollator, merge_views  # noqa: E402
from hf_vcr.trainers.joint_config import JointConfig  # noqa: E402
from hf_vcr.trainers.joint_trainer import JointCouplingModel, JointTrainer, build_joint_datasets, make_joint_collator  # noqa: E402
from hf_vcr.trainers.vcr_components import corpus_words  # noqa: E402

STEPS = 3


def _build(tok, seed):
    torch.manual_seed(seed)
    config = VcrConfig.tiny(vocab_size=len(tok), visual_source="none", fusion_dropout=0.0, classifier_dropout=0.0)
    config.text_config.hidden_dropout_prob = 0.0
    config.text_config.attention_probs_dropout_prob = 0.0
    return VcrForMultipleChoice(config)


_RUNS: dict = {}


def launch_once(tmp_path_factory) -> tuple[str, dict[str, str], dict[str, str]]:
    """Run the worker with 2 processes (batch 4) and in this process (batch 8), once per test session.

    Returns ``(out_dir, single-process paths, initial-parameter paths)``.
    """
    if "runs" not in _RUNS:
        import subprocess

        root = tmp_path_factory.mktemp("arc_joint_ddp")
        data, out = str(root / "data"), str(root / "out")
        write_vcr_corpus(data, n_train=24, n_val=4, with_images=False)
        env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", os.path.abspath(__file__),
             data, out, "4"],
            capture_output=True, text=True, env=env, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        single = run(data, out, 8)
        _RUNS["runs"] = (out, single, {k: os.path.join(out, f"{k}_init_rank0.pt") for k in single})
    return _RUNS["runs"]


def check(out: str, single_path: str, init_path: str, name: str) -> None:
    """Both ranks equal; the 2 x 4 run equals the 1 x 8 run to 1e-5; the parameters moved."""
    single, init = torch.load(single_path), torch.load(init_path)
    r0 = torch.load(os.path.join(out, f"{name}_world2_rank0.pt"))
    r1 = torch.load(os.path.join(out, f"{name}_world2_rank1.pt"))
    assert single.keys() == r0.keys() == r1.keys()
    for key, value in single.items():
        assert torch.equal(r0[key], r1[key]), key
        assert torch.allclose(r0[key], value, atol=1e-5), (key, (r0[key] - value).abs().max().item())
    moved = [k for k in single if not torch.allclose(single[k], init[k])]
    assert any("answer_model" in k for k in moved) and any("rationale_model" in k for k in moved)


def run(data_dir: str, out_dir: str, batch: int) -> dict[str, str]:
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", 0))
    paths = write_vcr_corpus(data_dir, n_train=24, n_val=4, with_images=False)
    train = load_vcr("train", paths["annotations_dir"], cache_dir=os.path.join(out_dir, f"cache{rank}"))
    tok = build_word_tokenizer([" ".join(corpus_words(train))])
    common = dict(max_steps=STEPS, per_device_train_batch_size=batch, optim="sgd", learning_rate=0.5,
                  lr_scheduler_type="constant", save_strategy="no", report_to="none", use_cpu=True, seed=0,
                  logging_steps=1, dataloader_num_workers=0, disable_tqdm=True)
    saved = {}

    # ARC stage 2 against the cached teacher
    teacher = _build(tok, 0)
    base = VcrCollator.for_model(teacher.config, pad_token_id=tok.pad_token_id)
    views = {n: tokenize_view(train, tok, n, max_objects=8) for n in ("q2a", "qa2r", "qr2a")}
    ids, logits, feats = compute_teacher_outputs(teacher, views["qr2a"], base, batch_size=8)
    cache = {k: (logits[i].numpy(), feats[i].numpy()) for i, k in enumerate(ids)}
    ds = merge_views({"a": views["q2a"], "r": views["qa2r"]}, extra=cache_columns(cache, ids, "worker"))
    model = ArcModel(_build(tok, 1), _build(tok, 2))
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, os.path.join(out_dir, f"arc_init_rank{rank}.pt"))
    trainer = ArcTrainer(model=model, args=ArcConfig(output_dir=os.path.join(out_dir, "arc"), alpha=0.3, beta=0.3, **common),
                         train_dataset=ds, data_collator=MultiViewCollator(base, ("a", "r"), ("teacher_logits", "teacher_feature")))
    trainer.train()
    world = trainer.args.world_size
    saved["arc"] = os.path.join(out_dir, f"arc_world{world}_rank{trainer.args.process_index}.pt")
    torch.save({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}, saved["arc"])

    # joint coupling, softmax weighting (deterministic)
    train_ds, _ = build_joint_datasets(train, train.select(range(2)), tok, max_length=64, reference_style="r2c", max_objects=8)
    model = JointCouplingModel(_build(tok, 1), _build(tok, 2))
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, os.path.join(out_dir, f"joint_init_rank{rank}.pt"))
    trainer = JointTrainer(model=model, args=JointConfig(output_dir=os.path.join(out_dir, "joint"), coupling="softmax", **common),
                           train_dataset=train_ds, data_collator=make_joint_collator(model.answer_model.config, tok))
    trainer.train()
    saved["joint"] = os.path.join(out_dir, f"joint_world{world}_rank{trainer.args.process_index}.pt")
    torch.save({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}, saved["joint"])
    return saved


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    from hf_vcr.utils.distributed import end_distributed

    end_distributed()
