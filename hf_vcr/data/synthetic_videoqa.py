"""An embedded, learnable VideoQA set in the NExT-QA layout whose answer depends on a known subset of clips.

Every video has ``num_clips`` clips. Two actors (of ``ACTORS``) each do one action (of ``ACTIONS``) during
their own span of ``span`` consecutive clips; an actor clip's feature is ``actor + action + noise``. All
other clips are environment: ``scene + noise``. The question asks what one of the two actors does
(``"what does the dog do"``); the right option is that actor's action, and the other actor's action is
always among the distractors, so answering needs the clips of the asked-about actor, and only those:
they are the known causal subset (``causal_clips_{split}.json``).

The environment is a shortcut in training: with probability ``spurious`` the scene of a training video is
the one paired with the answer's action, while validation scenes are drawn at random. A model that
answers from the environment loses accuracy on validation; a model that grounds the right clips does not.

Files written under ``out_dir`` (all generated from ``seed``; never committed):

* ``{split}.csv`` - NExT-QA columns ``video,frame_count,width,height,question,answer,qid,type,a0..a4``
* ``vid_feat/app_mot_{split}.h5`` - ``ids`` ``(N,)`` and ``feat`` ``(N, num_clips, feature_dim)``
* ``causal_clips_{split}.json`` - ``"{video}_{qid}"`` -> the clip indices the answer depends on
* ``metadata.json`` - the generation parameters
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any

import numpy as np

from ..utils.json_files import read_stamp

from ..utils.checkpoints import atomic_path, atomic_write_json
from .videoqa import NEXTQA_COLUMNS

ACTORS = ["man", "woman", "dog", "cat", "boy", "girl"]
ACTIONS = ["run", "jump", "swim", "eat", "sleep", "dance", "sing", "climb", "throw ball", "read book"]


def _write_split(out_dir: str, split: str, n: int, rng: np.random.Generator, protos: dict[str, np.ndarray], cfg: dict[str, Any]) -> None:
    k, span, dim = cfg["num_clips"], cfg["span"], cfg["feature_dim"]
    feats = np.empty((n, k, dim), dtype=np.float32)
    rows, causal = [], {}
    for i in range(n):
        video = f"{split}{i:06d}"
        actors = rng.choice(len(ACTORS), size=2, replace=False)
        actions = rng.choice(len(ACTIONS), size=2, replace=False)
        asked = int(rng.integers(2))
        answer_action = int(actions[asked])
        # two disjoint spans of `span` clips
        while True:
            starts = rng.integers(0, k - span + 1, size=2)
            if abs(int(starts[0]) - int(starts[1])) >= span:
                break
        if split == "train" and rng.random() < cfg["spurious"]:
            scene = answer_action  # the scene paired with the answer (shortcut)
        else:
            scene = int(rng.integers(len(ACTIONS)))
        clip = protos["scene"][scene][None, :] + cfg["noise"] * rng.standard_normal((k, dim))
        spans = []
        for a in range(2):
            idx = list(range(int(starts[a]), int(starts[a]) + span))
            spans.append(idx)
            clip[idx] = protos["actor"][actors[a]] + protos["action"][actions[a]] + cfg["noise"] * rng.standard_normal((span, dim))
        feats[i] = clip
        distractors = [int(actions[1 - asked])]
        others = [a for a in range(len(ACTIONS)) if a not in (answer_action, distractors[0])]
        distractors += [int(a) for a in rng.choice(others, size=3, replace=False)]
        options = distractors + [answer_action]
        order = rng.permutation(5)
        options = [options[j] for j in order]
        answer = options.index(answer_action)
        qid = 0
        rows.append(
            {
                "video": video,
                "frame_count": k * 16,
                "width": 320,
                "height": 240,
                "question": f"what does the {ACTORS[actors[asked]]} do",
                "answer": answer,
                "qid": qid,
                "type": "DO",
                **{f"a{j}": ACTIONS[o] for j, o in enumerate(options)},
            }
        )
        causal[f"{video}_{qid}"] = spans[asked]
    with atomic_path(os.path.join(out_dir, f"{split}.csv")) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=NEXTQA_COLUMNS)
            w.writeheader()
            w.writerows(rows)
    import h5py

    os.makedirs(os.path.join(out_dir, "vid_feat"), exist_ok=True)
    with atomic_path(os.path.join(out_dir, "vid_feat", f"app_mot_{split}.h5")) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("ids", data=np.array([r["video"] for r in rows], dtype="S"))
            f.create_dataset("feat", data=feats)
    atomic_write_json(os.path.join(out_dir, f"causal_clips_{split}.json"), causal)


def make_synthetic_videoqa(
    out_dir: str,
    seed: int = 0,
    num_train: int = 2000,
    num_val: int = 500,
    num_clips: int = 16,
    span: int = 3,
    feature_dim: int = 128,
    noise: float = 0.5,
    spurious: float = 0.8,
) -> dict[str, Any]:
    """Write the synthetic set (see the module docstring) to ``out_dir`` and return its metadata.

    Regenerates only when the parameters changed (``metadata.json`` records them).
    """
    if not 2 * span <= num_clips:
        raise ValueError(f"two spans of {span} clips do not fit in {num_clips} clips")
    cfg = dict(
        seed=seed, num_train=num_train, num_val=num_val, num_clips=num_clips, span=span, feature_dim=feature_dim, noise=noise, spurious=spurious
    )
    meta_path = os.path.join(out_dir, "metadata.json")
    if read_stamp(meta_path) == {**cfg, "actors": ACTORS, "actions": ACTIONS}:  # an empty or torn stamp: generate again
        return {**cfg, "actors": ACTORS, "actions": ACTIONS}
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    protos = {
        "actor": rng.standard_normal((len(ACTORS), feature_dim)).astype(np.float32),
        "action": rng.standard_normal((len(ACTIONS), feature_dim)).astype(np.float32),
        "scene": rng.standard_normal((len(ACTIONS), feature_dim)).astype(np.float32),
    }
    _write_split(out_dir, "train", num_train, rng, protos, cfg)
    _write_split(out_dir, "val", num_val, rng, protos, cfg)
    meta = {**cfg, "actors": ACTORS, "actions": ACTIONS}
    atomic_write_json(meta_path, meta)
    return meta


def synthetic_videoqa_texts() -> list[str]:
    """Every word the synthetic questions and options use (to build the word tokenizer)."""
    return [f"what does the {a} do" for a in ACTORS] + list(ACTIONS)


def load_causal_clips(path: str) -> dict[str, list[int]]:
    with open(path, encoding="utf-8") as f:
        return {k: list(v) for k, v in json.load(f).items()}


__all__ = ["make_synthetic_videoqa", "synthetic_videoqa_texts", "load_causal_clips", "ACTORS", "ACTIONS"]
