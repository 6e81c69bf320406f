"""The seven training steps of the GPU suite: each method's real model, real Trainer (``compute_loss`` through
``Trainer.training_step``) and synthetic batches of the configured shapes.

VCR, ARC, joint coupling and SOrT batches go through the library's own collators (``VcrCollator``,
``MultiViewCollator``, ``SortCollator``) from rows shaped like ``tokenize_view`` / ``tokenize_sort_examples``
output; EIGV and LSKD batches are built directly with the keys and shapes their collators produce (those
collators tokenize text, read h5 files and draw images, which a synthetic benchmark has no use for).

Two size presets: ``base`` (the GPU figures) and ``smoke`` (tiny, CPU, seconds). ``SIZES[preset][method]``
is a list of candidate sizes tried in order: a candidate that runs out of GPU memory gives way to the next,
and the suite prints which one ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gpu_suite_flops import (
    arc_step_flops,
    critic_step_flops,
    eigv_step_flops,
    joint_step_flops,
    lskd_student_step_flops,
    sort_step_flops,
    vcr_step_flops,
)

BERT_BASE = dict(model_type="bert", vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, attn_implementation="sdpa")
BERT_TINY = dict(model_type="bert", vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=128, attn_implementation="eager")
# BLIP-2's ViT-g/14 (EVA-CLIP, last layer removed) and Q-Former (BERT-base, cross-attention every 2nd layer)
VIT_G = dict(name="ViT-g/14 (BLIP-2)", hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
             image_size=224, patch_size=14)
VIT_L = dict(name="ViT-L/14", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
             image_size=224, patch_size=14)
VIT_TINY = dict(name="tiny ViT", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                image_size=32, patch_size=8)
QFORMER_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=30523,
                    cross_attention_frequency=2, max_position_embeddings=512)
QFORMER_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=128,
                    cross_attention_frequency=2, max_position_embeddings=128)

_VCR_BASE = dict(text=BERT_BASE, batch=32, choices=4, length=64, regions=36, region_dim=2048)
_VCR_TINY = dict(text=BERT_TINY, batch=4, choices=4, length=16, regions=6, region_dim=16)
SIZES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "base": {
        "vcr": [_VCR_BASE],
        "arc": [_VCR_BASE],
        "joint": [_VCR_BASE],
        # Pythia v0.1 (SOrT's base model): GloVe-sized embeddings, 1024-wide GRU, fusion 5000, classifier 10000, 3129 answers
        "sort": [dict(batch=32, subs=3, irrelevant=6, length=14, regions=36, region_dim=2048, vocab=20000, embed=300, gru=1024,
                      hidden=5000, attention=512, classifier=10000, answers=3129)],
        "eigv": [dict(text=BERT_BASE, batch=32, choices=5, length=32, clips=16, visual_dim=4096, hidden=512, layers=2, heads=8,
                      ff=2048, video_negatives=3, question_negatives=2)],
        "lskd": [dict(vision=VIT_G, qformer=QFORMER_BASE, queries=32, embed=256, batch=32, text=64),
                 dict(vision=VIT_L, qformer=QFORMER_BASE, queries=32, embed=256, batch=32, text=64)],
        "critic": [dict(vision=VIT_G, qformer=QFORMER_BASE, queries=32, embed=256, batch=16, text=64),
                   dict(vision=VIT_G, qformer=QFORMER_BASE, queries=32, embed=256, batch=8, text=64),
                   dict(vision=VIT_L, qformer=QFORMER_BASE, queries=32, embed=256, batch=16, text=64)],
    },
    "smoke": {
        "vcr": [_VCR_TINY],
        "arc": [_VCR_TINY],
        "joint": [_VCR_TINY],
        "sort": [dict(batch=3, subs=2, irrelevant=3, length=6, regions=5, region_dim=16, vocab=64, embed=16, gru=24,
                      hidden=32, attention=16, classifier=48, answers=20)],
        "eigv": [dict(text=BERT_TINY, batch=4, choices=3, length=8, clips=4, visual_dim=24, hidden=16, layers=1, heads=2,
                      ff=32, video_negatives=1, question_negatives=1)],
        # eager attention: FlopCounterMode does not see the CPU's fused attention kernel, and smoke checks the FLOP formulas
        "lskd": [dict(vision=VIT_TINY, qformer=QFORMER_TINY, queries=4, embed=16, batch=4, text=10, attn="eager")],
        "critic": [dict(vision=VIT_TINY, qformer=QFORMER_TINY, queries=4, embed=16, batch=4, text=10, attn="eager")],
    },
}


@dataclass
class Case:
    """One method's training step, ready to time."""

    trainer: Any
    batches: list[dict[str, torch.Tensor]]
    samples: int  # samples per step
    unit: str  # what one sample is
    flops: int  # model FLOPs per step (gpu_suite_flops)
    sizes: str  # the configuration that ran, in words
    extra: dict[str, Any] = field(default_factory=dict)


def training_args(cls, workdir: str, name: str, device: torch.device, bf16: bool, **kwargs):
    """The method's TrainingArguments subclass with the settings every case shares."""
    cuda = device.type == "cuda"
    tf32 = True if cuda and torch.cuda.get_device_capability(device)[0] >= 8 else None  # Ampere and newer
    return cls(output_dir=os.path.join(workdir, name), report_to="none", disable_tqdm=True, save_strategy="no",
               logging_strategy="no", learning_rate=1e-5, seed=0, bf16=bf16, tf32=tf32, use_cpu=not cuda,
               dataloader_num_workers=0, **kwargs)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


# ----------------------------------------------------------------------------- VCR-format rows


def _pair(rng: np.random.Generator, vocab: int, cls_id: int, sep_id: int, query: list[int], response_len: int, length: int,
          objects: int) -> dict[str, list[int]]:
    """``[CLS] query [SEP] response [SEP]`` of exactly ``length`` tokens (``tokenize_view``'s pair encoding)."""
    response = rng.integers(5, vocab, response_len).tolist()
    ids = [cls_id] + query + [sep_id] + response + [sep_id]
    ids = ids[:length]
    types = ([0] * (len(query) + 2) + [1] * (response_len + 1))[:length]
    obj = np.where(rng.random(len(ids)) < 0.15, rng.integers(0, objects, len(ids)), -1).tolist()
    obj[0] = obj[len(query) + 1] = obj[-1] = -1
    return {"input_ids": ids, "token_type_ids": types, "object_ids": obj}


def _view(rng, vocab, n_choices, length, objects, label, cls_id=2, sep_id=3) -> dict[str, Any]:
    q_len = (length - 3) // 2
    query = rng.integers(5, vocab, q_len).tolist()
    pairs = [_pair(rng, vocab, cls_id, sep_id, query, length - 3 - q_len, length, objects) for _ in range(n_choices)]
    return {k: [p[k] for p in pairs] for k in pairs[0]} | {"labels": label}


def _item(rng, i: int, objects: int, features_dir: str, region_dim: int) -> dict[str, Any]:
    """The shared columns of one VCR item, with its region features written as ``<img_fn>.npy``."""
    w, h = 640, 480
    x1, y1 = rng.uniform(0, w / 2, objects), rng.uniform(0, h / 2, objects)
    boxes = np.stack([x1, y1, x1 + rng.uniform(10, w / 2, objects), y1 + rng.uniform(10, h / 2, objects), np.ones(objects)], 1)
    img_fn = f"img_{i}.jpg"
    np.save(os.path.join(features_dir, f"img_{i}.npy"), rng.standard_normal((objects, region_dim)).astype(np.float32))
    return {"annot_id": f"bench-{i}", "img_fn": img_fn, "width": w, "height": h, "boxes": boxes.tolist()}


def _vcr_config(size: dict):
    from hf_vcr.models import VcrConfig

    return VcrConfig(text_config=dict(size["text"]), visual_source="features", region_feature_dim=size["region_dim"],
                     max_objects=size["regions"], image_size=(480, 640))


def _vcr_rows(size, n, workdir, seed, views: dict[str, int]) -> list[dict]:
    """``n`` merged-view rows (``merge_views`` layout): one ``<prefix>_*`` group per view (prefix -> choices)."""
    rng = np.random.default_rng(seed)
    features_dir = os.path.join(workdir, "region_features")
    os.makedirs(features_dir, exist_ok=True)
    vocab = size["text"]["vocab_size"]
    rows = []
    for i in range(n):
        row = _item(rng, i, size["regions"], features_dir, size["region_dim"])
        for prefix, n_choices in views.items():
            label = int(rng.integers(0, n_choices))
            view = _view(rng, vocab, n_choices, size["length"], size["regions"], label)
            row.update({(f"{prefix}_{k}" if prefix else k): v for k, v in view.items()})
        rows.append(row)
    return rows


def _build(model_fn: Callable[[], torch.nn.Module], device: torch.device) -> torch.nn.Module:
    """Initialise on the device itself (a 1B-parameter tower initialised on the CPU, then copied, is slow)."""
    torch.manual_seed(0)
    with torch.device(device):
        return model_fn()


def vcr_case(size, device, workdir, bf16, n_batches=2) -> Case:
    from hf_vcr.data.collator import VcrCollator
    from hf_vcr.models import VcrForMultipleChoice
    from hf_vcr.trainers.vcr_config import VcrTrainingConfig
    from hf_vcr.trainers.vcr_trainer import VcrTrainer

    config = _vcr_config(size)
    model = _build(lambda: VcrForMultipleChoice(config), device)
    collator = VcrCollator.for_model(config, pad_token_id=0, region_features_dir=os.path.join(workdir, "region_features"))
    rows = _vcr_rows(size, size["batch"] * n_batches, workdir, 0, {"": size["choices"]})
    batches = [to_device(collator(rows[b * size["batch"]:(b + 1) * size["batch"]]), device) for b in range(n_batches)]
    trainer = VcrTrainer(model=model, args=training_args(VcrTrainingConfig, workdir, "vcr", device, bf16), data_collator=collator)
    B, C, L = batches[0]["input_ids"].shape
    N = batches[0]["boxes"].shape[1]
    return Case(trainer, batches, B, "items", vcr_step_flops(config, B, C, L, N),
                f"Q→A, text encoder {_text_size(config.text_config)}, {C} choices x {L} tokens, {N} regions x "
                f"{size['region_dim']}, batch {B}")


def arc_case(size, device, workdir, bf16, n_batches=2) -> Case:
    from hf_vcr.data.collator import VcrCollator
    from hf_vcr.models import VcrForMultipleChoice
    from hf_vcr.trainers.arc_config import ArcConfig
    from hf_vcr.trainers.arc_trainer import ArcModel, ArcTrainer
    from hf_vcr.trainers.coupling_data import MultiViewCollator

    config = _vcr_config(size)
    model = _build(lambda: ArcModel(VcrForMultipleChoice(config), VcrForMultipleChoice(config)), device)
    base = VcrCollator.for_model(config, pad_token_id=0, region_features_dir=os.path.join(workdir, "region_features"))
    collator = MultiViewCollator(base, ("a", "r"), tensor_fields=("teacher_logits", "teacher_feature"))
    rows = _vcr_rows(size, size["batch"] * n_batches, workdir, 1, {"a": 4, "r": 4})
    rng = np.random.default_rng(1)
    for row in rows:  # the cached teacher outputs: f_C's logits and fused features of the four answers
        row["teacher_logits"] = rng.standard_normal(4).tolist()
        row["teacher_feature"] = rng.standard_normal((4, config.hidden_size)).tolist()
    batches = [to_device(collator(rows[b * size["batch"]:(b + 1) * size["batch"]]), device) for b in range(n_batches)]
    trainer = ArcTrainer(model=model, args=training_args(ArcConfig, workdir, "arc", device, bf16), data_collator=collator)
    B, C, La = batches[0]["a_input_ids"].shape
    Lr = batches[0]["r_input_ids"].shape[-1]
    N = batches[0]["boxes"].shape[1]
    return Case(trainer, batches, B, "items", arc_step_flops(config, B, La, Lr, N, C),
                f"stage 2, cached teacher, f_A + f_R each {_text_size(config.text_config)}, {C} choices x {La} tokens, "
                f"{N} regions, batch {B}")


def joint_case(size, device, workdir, bf16, n_batches=2) -> Case:
    from hf_vcr.data.collator import VcrCollator
    from hf_vcr.models import VcrForMultipleChoice
    from hf_vcr.trainers.coupling_data import MultiViewCollator
    from hf_vcr.trainers.joint_config import JointConfig
    from hf_vcr.trainers.joint_trainer import JointCouplingModel, JointTrainer

    config = _vcr_config(size)
    model = _build(lambda: JointCouplingModel(VcrForMultipleChoice(config), VcrForMultipleChoice(config)), device)
    base = VcrCollator.for_model(config, pad_token_id=0, region_features_dir=os.path.join(workdir, "region_features"))
    collator = MultiViewCollator(base, ("a",), answer_slots=("a", "j"), max_length=2 * size["length"])
    rows = _vcr_rows(size, size["batch"] * n_batches, workdir, 2, {"a": 4, "j": 16})
    for row in rows:  # joint labels are 4 * answer + rationale
        row["j_labels"] = 4 * row["a_labels"] + row["j_labels"] % 4
    batches = [to_device(collator(rows[b * size["batch"]:(b + 1) * size["batch"]]), device) for b in range(n_batches)]
    args = training_args(JointConfig, workdir, "joint", device, bf16)
    trainer = JointTrainer(model=model, args=args, data_collator=collator)
    b0 = batches[0]
    B, C, La = b0["a_input_ids"].shape
    Ls, Lans, N = b0["slot_input_ids"].shape[-1], b0["answer_ids"].shape[-1], b0["boxes"].shape[1]
    return Case(trainer, batches, B, "items", joint_step_flops(config, B, La, Ls, Lans, N),
                f"'{args.coupling}' coupling, f_A + f_R each {_text_size(config.text_config)}, {C} choices x {La} tokens "
                f"(rationale queries {Ls}), {N} regions, batch {B}")


def _text_size(tc) -> str:
    return f"{tc.num_hidden_layers}x{tc.hidden_size} (ff {tc.intermediate_size})"


# ----------------------------------------------------------------------------- SOrT


def sort_case(size, device, workdir, bf16, n_batches=2) -> Case:
    from hf_vcr.data.vqa_introspect import SortCollator
    from hf_vcr.models.modeling_vqa import VqaConfig, VqaForClassification
    from hf_vcr.trainers.sort_config import SortConfig
    from hf_vcr.trainers.sort_trainer import SortTrainer

    config = VqaConfig(vocab_size=size["vocab"], word_embedding_dim=size["embed"], question_hidden_size=size["gru"],
                       image_feature_dim=size["region_dim"], hidden_size=size["hidden"], attention_hidden_size=size["attention"],
                       classifier_hidden_size=size["classifier"], id2label={i: f"a{i}" for i in range(size["answers"])})
    model = _build(lambda: VqaForClassification(config), device)
    rng = np.random.default_rng(3)
    features = {i: {"features": rng.standard_normal((size["regions"], size["region_dim"])).astype(np.float32)}
                for i in range(size["batch"] * n_batches)}
    per = 1 + size["subs"] + size["irrelevant"]
    rows = [{"image_id": i,
             "question_input_ids": [rng.integers(1, size["vocab"], size["length"]).tolist() for _ in range(per)],
             "question_roles": [0] + [1] * size["subs"] + [2] * size["irrelevant"],
             "question_label_ids": [rng.integers(0, size["answers"], 2).tolist() for _ in range(per)],
             "question_label_scores": [[1.0, 0.3] for _ in range(per)]} for i in features]
    collator = SortCollator(features, num_labels=size["answers"], pad_token_id=0)
    batches = [to_device(collator(rows[b * size["batch"]:(b + 1) * size["batch"]]), device) for b in range(n_batches)]
    trainer = SortTrainer(model=model, args=training_args(SortConfig, workdir, "sort", device, bf16), data_collator=collator)
    b0 = batches[0]
    Q, K = b0["input_ids"].shape[0], b0["image_features"].shape[1]
    tokens = int(b0["attention_mask"].sum())
    return Case(trainer, batches, size["batch"], "items", sort_step_flops(config, Q, tokens, K),
                f"Pythia GRU {size['embed']}->{size['gru']}, fusion {size['hidden']}, classifier {size['classifier']}, "
                f"{size['answers']} answers; {size['batch']} items x {per} questions x {size['length']} tokens, {K} regions x "
                f"{size['region_dim']}")


# ----------------------------------------------------------------------------- EIGV


def eigv_case(size, device, workdir, bf16, n_batches=2) -> Case:
    from hf_vcr.models.configuration_videoqa import VideoQaConfig
    from hf_vcr.models.modeling_videoqa import VideoQaForMultipleChoice
    from hf_vcr.trainers.eigv_config import EigvConfig
    from hf_vcr.trainers.eigv_trainer import EigvTrainer

    text = {k: v for k, v in size["text"].items() if k != "attn_implementation"}
    config = VideoQaConfig(text_config=text, visual_dim=size["visual_dim"], num_clips=size["clips"], hidden_size=size["hidden"],
                           num_fusion_layers=size["layers"], num_attention_heads=size["heads"], intermediate_size=size["ff"],
                           num_choices=size["choices"])
    model = _build(lambda: VideoQaForMultipleChoice(config), device)
    g = torch.Generator().manual_seed(4)
    B, C, L = size["batch"], size["choices"], size["length"]
    batches = []
    for b in range(n_batches):  # VideoQaCollator's output: tokenizer(question, option) per option, h5 clip features
        batches.append(to_device({
            "clip_features": torch.randn(B, size["clips"], size["visual_dim"], generator=g),
            "input_ids": torch.randint(5, text["vocab_size"], (B, C, L), generator=g),
            "attention_mask": torch.ones(B, C, L, dtype=torch.long),
            "token_type_ids": (torch.arange(L) >= L // 2).long().expand(B, C, L).contiguous(),
            "labels": torch.randint(0, C, (B,), generator=g),
            "video_index": torch.arange(b * B, (b + 1) * B),
        }, device))
    args = training_args(EigvConfig, workdir, "eigv", device, bf16, num_video_negatives=size["video_negatives"],
                         num_question_negatives=size["question_negatives"])
    trainer = EigvTrainer(model=model, args=args)
    views = 2 + args.num_negatives
    return Case(trainer, batches, B, "questions",
                eigv_step_flops(config, B, C, L, args.num_video_negatives, args.num_question_negatives),
                f"{size['clips']} clips x {size['visual_dim']}, text encoder {_text_size(config.text_config)}, {C} options x {L} "
                f"tokens, d {size['hidden']}, {size['layers']} fusion layers, {views} views (N = {args.num_negatives}), batch {B}")


# ----------------------------------------------------------------------------- LSKD student and critic


def _blip2_parts(size) -> dict:
    vision = {k: v for k, v in size["vision"].items() if k != "name"}
    return dict(
        vision_config=dict(vision, initializer_range=0.02),
        qformer_config=dict(size["qformer"], use_qformer_text_input=True),
        # LskdStudentModel / LskdCriticModel build no language model: a token OPT config fills the field
        text_config=dict(model_type="opt", vocab_size=64, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2),
        num_query_tokens=size["queries"], image_text_hidden_size=size["embed"],
        **({"attn_implementation": size["attn"]} if "attn" in size else {}),
    )


def _image_text_batches(size, vocab, n_batches, device, seed, critic=False) -> list[dict]:
    """``LskdCollator``'s output: drawn images through the BLIP-2 image processor, tokenized text (+ critic targets)."""
    g = torch.Generator().manual_seed(seed)
    B, T, s = size["batch"], size["text"], size["vision"]["image_size"]
    out = []
    for b in range(n_batches):
        batch = {"pixel_values": torch.randn(B, 3, s, s, generator=g), "input_ids": torch.randint(5, vocab - 1, (B, T), generator=g),
                 "attention_mask": torch.ones(B, T, dtype=torch.long), "example_ids": torch.arange(b * B, (b + 1) * B)}
        if critic:
            batch.update(labels=torch.randint(0, 2, (B,), generator=g), qa_score=torch.rand(B, generator=g),
                         r_score=torch.rand(B, generator=g))
        out.append(to_device(batch, device))
    return out


def lskd_case(size, device, workdir, bf16, n_batches=2) -> Case:
    from hf_vcr.models.configuration_lskd import LskdStudentConfig
    from hf_vcr.models.modeling_lskd import LskdStudentModel
    from hf_vcr.trainers.lskd_config import QFormerDistillConfig
    from hf_vcr.trainers.lskd_trainer import QFormerDistillTrainer

    config = LskdStudentConfig(**_blip2_parts(size))
    model = _build(lambda: LskdStudentModel(config), device)
    batches = _image_text_batches(size, config.qformer_config.vocab_size, n_batches, device, 5)
    trainer = QFormerDistillTrainer(model=model, args=training_args(QFormerDistillConfig, workdir, "lskd", device, bf16))
    B, T = size["batch"], size["text"]
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Case(trainer, batches, B, "image-text pairs", lskd_student_step_flops(config, B, T),
                f"stage 1 (ITC + ITM + ITG), frozen random {size['vision']['name']} vision tower, Q-Former "
                f"{config.qformer_config.num_hidden_layers}x{config.qformer_config.hidden_size}, {size['queries']} queries, "
                f"{T} text tokens, batch {B}; {params / 1e6:.4g}M parameters, {trainable / 1e6:.4g}M trained")


def critic_case(size, device, workdir, bf16, n_batches=2) -> Case:
    from hf_vcr.models.configuration_lskd import LskdCriticConfig
    from hf_vcr.models.modeling_lskd import LskdCriticModel
    from hf_vcr.trainers.critic_config import CriticConfig
    from hf_vcr.trainers.critic_trainer import CriticTrainer

    config = LskdCriticConfig(**_blip2_parts(size))
    model = _build(lambda: LskdCriticModel(config), device)
    args = training_args(CriticConfig, workdir, "critic", device, bf16)
    model.freeze_vision_model(args.freeze_vision)  # as hf_vcr.flows.critic does
    batches = _image_text_batches(size, config.qformer_config.vocab_size, n_batches, device, 6, critic=True)
    trainer = CriticTrainer(model=model, args=args)
    B, T = size["batch"], size["text"]
    params = sum(p.numel() for p in model.parameters())
    return Case(trainer, batches, B, "image-text pairs", critic_step_flops(config, B, T, train_vision=not args.freeze_vision),
                f"random {size['vision']['name']} vision tower {'frozen' if args.freeze_vision else 'trained (paper)'}, Q-Former "
                f"{config.qformer_config.num_hidden_layers}x{config.qformer_config.hidden_size}, {size['queries']} queries, "
                f"{T} text tokens, batch {B}; {params / 1e6:.4g}M parameters")


CASES: dict[str, Callable[..., Case]] = {
    "vcr": vcr_case, "arc": arc_case, "joint": joint_case, "sort": sort_case, "eigv": eigv_case, "lskd": lskd_case, "critic": critic_case,
}
