"""A PNG of EIGV's causal clip mask over the clips of chosen examples.

Each example is one row of ``K`` cells (one per clip, left to right in time). A cell's shade is the clip's
causal score ``p_c / (p_c + p_e)``; clips in the causal mask carry a thick green frame; clips known to matter
(when given, e.g. on the synthetic set) are marked by an orange bar under the cell. The question and the
predicted / right answer are written above the row.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from ..utils.checkpoints import atomic_path


def draw_causal_masks(path: str, examples: Sequence[dict[str, Any]], cell: int = 28, width_text: int = 0) -> str:
    """Write the PNG to ``path`` and return it.

    ``examples``: dicts with ``causal_mask`` (K 0/1), ``causal_probs`` (K floats in [0, 1]) and optionally
    ``title`` (str) and ``true_clips`` (clip indices known to matter).
    """
    from PIL import Image, ImageDraw

    if not examples:
        raise ValueError("no examples to draw")
    k = max(len(e["causal_mask"]) for e in examples)
    margin, text_h, bar_h, gap = 10, 14, 5, 12
    row_h = text_h + cell + bar_h + gap
    width = max(2 * margin + k * cell, width_text or 0, 2 * margin + 6 * max(len(str(e.get("title", ""))) for e in examples))
    height = 2 * margin + row_h * len(examples) + text_h
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((margin, margin // 2), "shade: causal score p_c/(p_c+p_e); green frame: causal mask; orange bar: known clips", fill=(60, 60, 60))
    for r, ex in enumerate(examples):
        top = margin + text_h + r * row_h
        draw.text((margin, top), str(ex.get("title", f"example {r}")), fill=(0, 0, 0))
        y0 = top + text_h
        mask, probs = list(ex["causal_mask"]), list(ex["causal_probs"])
        true = set(int(i) for i in ex.get("true_clips", []) or [])
        for i in range(len(mask)):
            x0 = margin + i * cell
            p = min(max(float(probs[i]), 0.0), 1.0)
            shade = int(255 - 200 * p)
            draw.rectangle([x0 + 1, y0 + 1, x0 + cell - 2, y0 + cell - 2], fill=(shade, shade, 255), outline=(150, 150, 150))
            if int(mask[i]):
                draw.rectangle([x0 + 1, y0 + 1, x0 + cell - 2, y0 + cell - 2], outline=(0, 160, 0), width=3)
            if i in true:
                draw.rectangle([x0 + 2, y0 + cell + 1, x0 + cell - 3, y0 + cell + bar_h], fill=(255, 140, 0))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
