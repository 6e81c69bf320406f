"""An embedded, learnable SOrT set written in the VQA-Introspect + VQAv2 layout.

Every image holds ``num_regions`` regions; each region is one object with one colour, and its
feature is ``E_object + E_colour + noise`` (fixed random embeddings drawn from the seed), with a
box on a grid (for the grounding heatmap). A *reasoning* question asks about a concept whose
evidence is one object's colour ("is it <concept>?" is "yes" when the evidence object has one of
the concept's colours). Its *sub-questions* ask about that same object ("what color is the
<evidence>?", "is the <evidence> <colour>?") -- they share the reasoning question's evidence; its
*irrelevant* questions ask about the other objects in the image. Reasoning answers are "yes"
more often than "no" (a language prior a model can lean on).

The files are those the real loader reads: ``introspect_{split}.json`` (VQA-Introspect),
``vqa_questions_{split}.json`` / ``vqa_annotations_{split}.json`` (official VQAv2 format, 10
human answers each, reasoning and irrelevant questions, plus one VQAv2 question that repeats a
sub-question and so must not count as irrelevant) and ``region_features.h5``
(``ids``, ``features``, ``boxes``). Nothing is committed: it is generated from the seed.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..utils.checkpoints import atomic_path, atomic_write_json

__all__ = ["OBJECTS", "COLORS", "CONCEPTS", "make_synthetic_introspect", "write_synthetic_introspect", "synthetic_introspect_files"]

OBJECTS = ["sky", "grass", "dog", "car", "bus", "table", "cup", "lamp", "bird", "boat", "kite", "horse"]
COLORS = ["red", "blue", "green", "yellow", "white", "black"]
# concept word -> (evidence object, colours that make the answer "yes")
CONCEPTS = {
    "daytime": ("sky", ("blue", "white")),
    "spring": ("grass", ("green", "yellow")),
    "friendly": ("dog", ("white", "yellow")),
    "expensive": ("car", ("red", "black")),
    "crowded": ("bus", ("red", "yellow")),
    "formal": ("table", ("white", "black")),
    "hot": ("cup", ("red", "white")),
    "cozy": ("lamp", ("yellow", "red")),
    "wild": ("bird", ("green", "blue")),
    "calm": ("boat", ("white", "blue")),
    "windy": ("kite", ("red", "green")),
    "racing": ("horse", ("black", "white")),
}


def synthetic_introspect_files(out_dir: str, split: str) -> dict[str, str]:
    return {
        "introspect_json": os.path.join(out_dir, f"introspect_{split}.json"),
        "vqa_questions": os.path.join(out_dir, f"vqa_questions_{split}.json"),
        "vqa_annotations": os.path.join(out_dir, f"vqa_annotations_{split}.json"),
        "region_features": os.path.join(out_dir, "region_features.h5"),
    }


def _human_answers(rng: np.random.Generator, answer: str, choices: list[str], noise: float) -> list[dict]:
    out = []
    for j in range(10):
        a = answer if rng.random() >= noise else str(rng.choice(choices))
        out.append({"answer": a, "answer_confidence": "yes", "answer_id": j + 1})
    return out


def make_synthetic_introspect(
    n_items: int,
    seed: int = 0,
    image_id_offset: int = 1,
    num_regions: int = 6,
    feature_dim: int = 32,
    noise: float = 0.5,
    yes_rate: float = 0.7,
    n_irrelevant: int = 3,
    embedding_seed: int = 1234,
    n_concepts: int | None = None,
) -> dict:
    """Build one split in memory: ``{"introspect", "questions", "annotations", "ids", "features", "boxes"}``."""
    if num_regions > len(OBJECTS) or n_irrelevant > num_regions - 1:
        raise ValueError("num_regions must be <= number of objects and n_irrelevant <= num_regions - 1")
    emb_rng = np.random.default_rng(embedding_seed)  # shared by every split: the "visual world"
    obj_emb = emb_rng.normal(size=(len(OBJECTS), feature_dim)).astype(np.float32)
    col_emb = emb_rng.normal(size=(len(COLORS), feature_dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    concepts = list(CONCEPTS)[:n_concepts]
    introspect, questions, annotations = {}, [], []
    ids, feats, boxes = [], [], []
    cols = 3
    for n in range(n_items):
        image_id = image_id_offset + n
        concept = concepts[rng.integers(len(concepts))]
        evidence, yes_colors = CONCEPTS[concept]
        answer = "yes" if rng.random() < yes_rate else "no"
        pool = list(yes_colors) if answer == "yes" else [c for c in COLORS if c not in yes_colors]
        ev_color = str(rng.choice(pool))
        others = [o for o in OBJECTS if o != evidence]
        chosen = [evidence] + [str(o) for o in rng.choice(others, size=num_regions - 1, replace=False)]
        colors = [ev_color] + [str(rng.choice(COLORS)) for _ in range(num_regions - 1)]
        order = rng.permutation(num_regions)
        objs = [chosen[i] for i in order]
        cols_ = [colors[i] for i in order]
        f = np.stack(
            [obj_emb[OBJECTS.index(o)] + col_emb[COLORS.index(c)] for o, c in zip(objs, cols_)]
        ) + noise * rng.normal(size=(num_regions, feature_dim)).astype(np.float32)
        b = np.array(
            [[(k % cols) * 20, (k // cols) * 20, (k % cols) * 20 + 20, (k // cols) * 20 + 20] for k in range(num_regions)],
            dtype=np.float32,
        )
        ids.append(image_id)
        feats.append(f.astype(np.float32))
        boxes.append(b)
        # sub-questions about the evidence object
        probe = str(rng.choice(COLORS))
        subs = [
            {"sub_question": f"what color is the {evidence}?", "sub_answer": ev_color},
            {"sub_question": f"is the {evidence} {probe}?", "sub_answer": "yes" if probe == ev_color else "no"},
        ]
        qid = image_id * 1000
        introspect[str(qid)] = {
            "image_id": image_id,
            "reasoning_question": f"is it {concept}?",
            "reasoning_answer_most_common": answer,
            "introspect": [
                {"sub_qa": [subs[0]], "pred_q_type": "reasoning"},
                {"sub_qa": [subs[1]], "pred_q_type": "perception"},
                {"sub_qa": [{"sub_question": "", "sub_answer": "yes"}], "pred_q_type": "invalid"},
            ],
        }
        questions.append({"image_id": image_id, "question": f"is it {concept}?", "question_id": qid})
        annotations.append(
            {
                "question_id": qid, "image_id": image_id, "question_type": "is it", "answer_type": "yes/no",
                "multiple_choice_answer": answer, "answers": _human_answers(rng, answer, ["yes", "no"], 0.1),
            }
        )
        # irrelevant questions: the other objects of the image (VQAv2 questions on the same image)
        other_regions = [k for k in range(num_regions) if objs[k] != evidence]
        for j, k in enumerate(rng.choice(other_regions, size=n_irrelevant, replace=False)):
            o, c = objs[k], cols_[k]
            if j % 2 == 0:
                text, ans, atype, choices = f"what color is the {o}?", c, "other", COLORS
            else:
                p = str(rng.choice(COLORS))
                text, ans, atype, choices = f"is the {o} {p}?", ("yes" if p == c else "no"), "yes/no", ["yes", "no"]
            q2 = qid + 1 + j
            questions.append({"image_id": image_id, "question": text, "question_id": q2})
            annotations.append(
                {
                    "question_id": q2, "image_id": image_id, "question_type": text.split()[0], "answer_type": atype,
                    "multiple_choice_answer": ans, "answers": _human_answers(rng, ans, choices, 0.1),
                }
            )
        # a VQAv2 question that repeats a sub-question: not irrelevant
        q3 = qid + 100
        questions.append({"image_id": image_id, "question": subs[0]["sub_question"].upper(), "question_id": q3})
        annotations.append(
            {
                "question_id": q3, "image_id": image_id, "question_type": "what color", "answer_type": "other",
                "multiple_choice_answer": ev_color, "answers": _human_answers(rng, ev_color, COLORS, 0.1),
            }
        )
    return {
        "introspect": introspect,
        "questions": questions,
        "annotations": annotations,
        "ids": np.array(ids, dtype=np.int64),
        "features": np.stack(feats),
        "boxes": np.stack(boxes),
    }


def write_synthetic_introspect(
    out_dir: str, n_train: int = 1500, n_eval: int = 300, seed: int = 0, **kwargs
) -> dict[str, dict[str, str]]:
    """Write the train and eval splits (and one features file for both) under ``out_dir``.

    Returns ``{"train": {...paths}, "eval": {...paths}}`` with the keys of
    :func:`synthetic_introspect_files`. Deterministic in ``seed``; files are written atomically.
    """
    import h5py

    os.makedirs(out_dir, exist_ok=True)
    splits = {
        "train": make_synthetic_introspect(n_train, seed=seed, image_id_offset=1, **kwargs),
        "eval": make_synthetic_introspect(n_eval, seed=seed + 1, image_id_offset=1_000_000, **kwargs),
    }
    paths = {}
    for split, data in splits.items():
        files = synthetic_introspect_files(out_dir, split)
        atomic_write_json(files["introspect_json"], data["introspect"])
        atomic_write_json(
            files["vqa_questions"],
            {"info": {"description": "hf_vcr synthetic"}, "task_type": "Open-Ended", "data_type": "synthetic",
             "data_subtype": split, "questions": data["questions"], "license": {}},
        )
        atomic_write_json(
            files["vqa_annotations"],
            {"info": {"description": "hf_vcr synthetic"}, "data_type": "synthetic", "data_subtype": split,
             "annotations": data["annotations"], "license": {}},
        )
        paths[split] = files
    with atomic_path(paths["train"]["region_features"]) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("ids", data=np.concatenate([d["ids"] for d in splits.values()]))
            h5.create_dataset("features", data=np.concatenate([d["features"] for d in splits.values()]))
            h5.create_dataset("boxes", data=np.concatenate([d["boxes"] for d in splits.values()]))
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(f"hf_vcr synthetic VQA-Introspect set, seed={seed}, n_train={n_train}, n_eval={n_eval}, {json.dumps(kwargs)}\n")
    return paths
