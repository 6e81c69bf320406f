"""An embedded, learnable localized commonsense set in the LSKD corpus format.

Each image holds 2-3 objects (cells of a 2x2 grid), each a patch of one *content* colour.
Questions point at one object by region id (``[k]``, an int-list reference in the tokens, a
highlighted box in the image) and ask what colour it has; the answer depends only on that
region's content. Distractor answers are the colours of the *other* objects in the same image
(plus an unused colour), so looking at the image globally is not enough: the model has to read
the highlighted region.

``write_synthetic_lskd(out_dir, ...)`` writes PNG images plus

* ``corpus.jsonl``: the LSKD corpus (``prediction`` = a critic-like score; the items whose
  answer is wrong get low scores), boxes in ``references``;
* ``regions.jsonl``: the same boxes as a separate region file (``region_locations``);
* ``critic.jsonl``: critic training data (``label`` annotator verdicts, ``qa_score``, ``r_score``)
  where the answer and/or the rationale can be visually wrong;
* ``mc.jsonl``: a zero-shot multiple-choice set (``image``, ``references``, ``question``,
  ``choices`` (4 token lists), ``label``).

Everything is generated deterministically from ``seed``.
"""

from __future__ import annotations

import json
import os
import random

from PIL import Image, ImageDraw

CONTENT_COLORS = {
    "black": (10, 10, 10),
    "white": (250, 250, 250),
    "green": (30, 160, 30),
    "blue": (20, 40, 230),
    "red": (220, 20, 20),
    "yellow": (240, 220, 20),
}
N_IDS = 4  # region ids used by the corpus (the augmentation may re-assign them)
OBJECTS = ["ball", "box", "cup", "hat"]
GRID = 2


def _cells(image_size: int):
    step = image_size // GRID
    for gy in range(GRID):
        for gx in range(GRID):
            yield [gx * step + 1, gy * step + 1, (gx + 1) * step - 2, (gy + 1) * step - 2]


def _draw_image(image_size: int, boxes: list[list[int]], colors: list[str], rng: random.Random) -> Image.Image:
    bg = tuple(rng.randint(100, 160) for _ in range(3))
    img = Image.new("RGB", (image_size, image_size), bg)
    d = ImageDraw.Draw(img)
    for box, color in zip(boxes, colors):
        x1, y1, x2, y2 = box
        m = (x2 - x1) // 5
        d.rectangle([x1 + m, y1 + m, x2 - m, y2 - m], fill=CONTENT_COLORS[color])
    return img


def _qar(rid: int, obj: str, color: str, rationale_color: str | None = None) -> tuple[list, list, list]:
    rationale_color = rationale_color or color
    question = ["what", "color", "is", "the", obj, "in", [rid], "?"]
    answer = ["it", "is", color, "."]
    rationale = ["the", obj, "inside", [rid], "looks", rationale_color, "."]
    return question, answer, rationale


def _reference(rid: int, box, obj: str) -> dict:
    return {"name": str(rid), "boxes": [list(map(float, box))], "segms": None, "obj_guess": obj, "tag": "region"}


def write_synthetic_lskd(
    out_dir: str,
    n_images: int = 400,
    n_mc: int = 200,
    n_critic: int = 400,
    image_size: int = 32,
    seed: int = 0,
    boxed_distractors: bool = False,
) -> dict[str, str]:
    """Write the synthetic corpus, region file, critic set and MC set under ``out_dir``; return their paths.

    A part with no items is not written (no empty file that a loader would then reject): ``corpus`` and
    ``regions`` need ``n_images > 0``, ``mc`` needs ``n_mc > 0``, ``critic`` needs ``n_critic > 0``.

    With ``boxed_distractors`` every object is a region (ids must then be bound to colours); by
    default only the asked-about object is a highlighted region and the others are unmarked
    objects of other colours, so the answer needs the highlighted region's content.
    """
    rng = random.Random(seed)
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    colors = list(CONTENT_COLORS)
    cells = list(_cells(image_size))
    counts = {"corpus": n_images, "mc": n_mc, "critic": n_critic}
    if min(counts.values()) < 0 or not any(counts.values()):
        raise ValueError(f"write_synthetic_lskd needs non-negative counts, at least one positive; got {counts}")
    wanted = [k for k in ("corpus", "regions", "critic", "mc") if counts["corpus" if k == "regions" else k] > 0]
    paths = {k: os.path.join(out_dir, f"{k}.jsonl") for k in wanted}
    files = {k: open(p + ".tmp", "w", encoding="utf-8") for k, p in paths.items()}
    try:
        index = 0
        for part in ("corpus", "mc", "critic"):
            for _ in range(counts[part]):
                n_regions = rng.randint(2, 3)
                cell_idx = sorted(rng.sample(range(len(cells)), n_regions))
                ids = sorted(rng.sample(range(N_IDS), n_regions))  # region ids as a corpus would number them
                region_colors = rng.sample(colors, n_regions)  # distinct contents: the answer needs the right region
                objs = [rng.choice(OBJECTS) for _ in ids]
                boxes = [cells[c] for c in cell_idx]
                img = _draw_image(image_size, boxes, region_colors, rng)
                name = f"{part}_{index:06d}.png"
                img.save(os.path.join(img_dir, name))
                image = f"images/{name}"
                k = rng.randrange(n_regions)
                rid, obj, color = ids[k], objs[k], region_colors[k]
                if not boxed_distractors:  # only the asked-about object is a region; the others are unmarked objects
                    ids, boxes, objs = [rid], [boxes[k]], [obj]
                refs = [_reference(r, b, o) for r, b, o in zip(ids, boxes, objs)]
                base = {"image": image, "source": "synthetic", "split": "train" if part == "corpus" else part, "index": index,
                        "region": [rid], "region_all": ids, "references": refs}
                if part == "corpus":
                    # the machine-written corpus: 1 in 4 answers is visually wrong and the critic scored it low
                    wrong = rng.random() < 0.25
                    say = rng.choice([c for c in colors if c != color]) if wrong else color
                    q, a, r = _qar(rid, obj, say)
                    pred = rng.uniform(0.0, 0.6) if wrong else rng.uniform(0.82, 1.0)
                    files["corpus"].write(json.dumps({**base, "question": q, "answer": a, "rationale": r, "prediction": round(pred, 4)}) + "\n")
                    files["regions"].write(json.dumps({"image": image, "region_locations": {
                        str(i): {"boxes": [list(map(float, b))], "obj_guess": o, "tag": "region"} for i, b, o in zip(ids, boxes, objs)}}) + "\n")
                elif part == "mc":
                    others = [c for c in colors if c != color]
                    rng.shuffle(others)
                    choices = [color] + others[:3]
                    rng.shuffle(choices)
                    q, _, _ = _qar(rid, obj, color)
                    files["mc"].write(json.dumps({**base, "question": q, "choices": [["it", "is", c, "."] for c in choices],
                                                  "label": choices.index(color)}) + "\n")
                else:
                    qa_ok = rng.random() < 0.6
                    r_ok = rng.random() < 0.7
                    say = color if qa_ok else rng.choice([c for c in colors if c != color])
                    r_say = say if r_ok else rng.choice([c for c in colors if c != say])
                    q, a, r = _qar(rid, obj, say, r_say)
                    # annotator verdicts: a visually wrong answer or a rationale that contradicts it gets "reject"
                    verdicts = ["accept" if (qa_ok and r_ok) else "reject", "accept" if qa_ok else "reject"]
                    qa_score = 1.0 if qa_ok else 0.0
                    r_score = (1.0 if r_ok else 0.0) if qa_ok else 0.0
                    files["critic"].write(json.dumps({**base, "question": q, "answer": a, "rationale": r, "label": verdicts,
                                                      "qa_score": qa_score, "r_score": r_score}) + "\n")
                index += 1
    finally:
        for f in files.values():
            f.close()
    for k, p in paths.items():
        os.replace(p + ".tmp", p)
    return {**paths, "images_dir": out_dir}
