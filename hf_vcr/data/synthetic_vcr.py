"""An embedded, learnable VCR-format corpus drawn procedurally.

Every image holds five or six coloured boxes on a noisy background. The question asks
for the colour of one referenced object, so the right answer depends on what that
object looks like; each rationale claims the object "has the same colour as" another
object, and only one of the four candidates really does, so picking it needs the answer
(or the image comparison it stands for). The answer colours are drawn uniformly, so a
model that ignores the image stays at chance.

The files follow the official layout exactly: ``{split}.jsonl`` and
``vcr1images/<movie>/<frame>.jpg`` + ``.json`` (boxes with scores, segms, names, width,
height).
"""

from __future__ import annotations

import json
import os
import random
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from ..utils.checkpoints import atomic_write_json
from ..utils.json_files import read_stamp

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
    "orange": (240, 140, 30),
}
CLASSES = ["person", "person", "car", "dog", "cup", "chair", "bottle", "horse"]
QUESTIONS = [
    ["What", "colour", "is", None, "?"],
    ["Which", "colour", "does", None, "have", "?"],
    ["What", "is", "the", "colour", "of", None, "?"],
]
FRAMES_PER_MOVIE = 200


def _layout(rng: random.Random, n: int, size: int) -> list[list[float]]:
    """n non-overlapping boxes, one per cell of a 3x3 grid."""
    cell = size / 3
    cells = rng.sample(range(9), n)
    boxes = []
    for c in cells:
        cx, cy = (c % 3) * cell, (c // 3) * cell
        w, h = rng.uniform(0.55, 0.9) * cell, rng.uniform(0.55, 0.9) * cell
        x1, y1 = cx + rng.uniform(0, cell - w), cy + rng.uniform(0, cell - h)
        boxes.append([round(x1, 2), round(y1, 2), round(x1 + w, 2), round(y1 + h, 2)])
    return boxes


def _item(rng: random.Random, idx: int, split: str, size: int):
    names = list(COLOURS)
    q_colour = rng.choice(names)
    others = [c for c in names if c != q_colour]
    distractor_colours = rng.sample(others, 3)
    n_obj = rng.choice([5, 6])
    colours = [q_colour, q_colour] + distractor_colours + [rng.choice(names) for _ in range(n_obj - 5)]
    order = list(range(n_obj))
    rng.shuffle(order)
    colours = [colours[i] for i in order]
    q_obj, same_obj = order.index(0), order.index(1)
    distractor_objs = [order.index(k) for k in (2, 3, 4)]
    objects = [rng.choice(CLASSES) for _ in range(n_obj)]
    boxes = _layout(rng, n_obj, size)

    template = rng.choice(QUESTIONS)
    question = [[q_obj] if t is None else t for t in template]
    answer_colours = [q_colour] + rng.sample(others, 3)
    rng.shuffle(answer_colours)
    answer_choices = [[[q_obj], "is", c, "."] for c in answer_colours]
    candidates = [same_obj] + distractor_objs
    rng.shuffle(candidates)
    rationale_choices = [[[q_obj], "has", "the", "same", "colour", "as", [x], "."] for x in candidates]

    movie = f"synthetic_{idx // FRAMES_PER_MOVIE:04d}"
    frame = f"{split}_{idx:06d}"
    item = {
        "movie": movie,
        "objects": objects,
        "img_fn": f"{movie}/{frame}.jpg",
        "metadata_fn": f"{movie}/{frame}.json",
        "question": question,
        "answer_choices": answer_choices,
        "rationale_choices": rationale_choices,
        "answer_label": answer_colours.index(q_colour),
        "rationale_label": candidates.index(same_obj),
        "img_id": f"{split}-{idx}",
        "annot_id": f"{split}-{idx}",
        "question_number": 0,
    }
    return item, objects, boxes, colours


def _draw(rng: np.random.Generator, size: int, boxes, colours) -> Image.Image:
    background = rng.integers(90, 170, size=(size, size, 1), dtype=np.uint8).repeat(3, axis=2)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    for (x1, y1, x2, y2), colour in zip(boxes, colours):
        jitter = tuple(int(np.clip(v + rng.integers(-15, 16), 0, 255)) for v in COLOURS[colour])
        draw.rectangle([x1, y1, x2, y2], fill=jitter)
    return image


def iter_items(split: str, n: int, seed: int, size: int = 64) -> Iterator[tuple[dict, list, list, list]]:
    rng = random.Random(f"{seed}-{split}")
    for idx in range(n):
        yield _item(rng, idx, split, size)


def write_vcr_corpus(
    output_dir: str,
    n_train: int = 3000,
    n_val: int = 600,
    seed: int = 0,
    image_size: int = 64,
    with_images: bool = True,
) -> dict[str, str]:
    """Write ``train.jsonl``, ``val.jsonl`` and ``vcr1images/`` under ``output_dir``.

    Returns the paths. Deterministic in ``seed``; an existing complete corpus with the same
    parameters is reused.
    """
    os.makedirs(output_dir, exist_ok=True)
    stamp_path = os.path.join(output_dir, "synthetic_vcr.json")
    stamp = {"n_train": n_train, "n_val": n_val, "seed": seed, "image_size": image_size, "with_images": with_images, "version": 1}
    paths = {"annotations_dir": output_dir, "images_dir": os.path.join(output_dir, "vcr1images")}
    if read_stamp(stamp_path) == stamp:  # (an empty or torn stamp from a killed run: generate again)
        return paths
    for split, n in (("train", n_train), ("val", n_val)):
        draw_rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        tmp = os.path.join(output_dir, f".{split}.jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for item, objects, boxes, colours in iter_items(split, n, seed, image_size):
                f.write(json.dumps(item) + "\n")
                if with_images:
                    folder = os.path.join(paths["images_dir"], item["movie"])
                    os.makedirs(folder, exist_ok=True)
                    _draw(draw_rng, image_size, boxes, colours).save(os.path.join(paths["images_dir"], item["img_fn"]), quality=95)
                    meta = {
                        "boxes": [b + [1.0] for b in boxes],
                        "segms": [[[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]]] for b in boxes],
                        "names": objects,
                        "width": image_size,
                        "height": image_size,
                    }
                    with open(os.path.join(paths["images_dir"], item["metadata_fn"]), "w") as mf:
                        json.dump(meta, mf)
        os.replace(tmp, os.path.join(output_dir, f"{split}.jsonl"))
    atomic_write_json(stamp_path, stamp)
    return paths
