"""Region prompting: highlighted regions drawn into the image and named ``[k]`` in the text.

LSKD (Park et al., 2023, "Localized Symbolic Knowledge Distillation for Visual
Commonsense Models", section 3) lets a user point at regions: each region id ``k`` is
drawn as a translucent box in a colour that is fixed for that id across the whole
corpus (``[0]`` always gets the same colour), and the text names it ``[k]``. During
training the ids are re-assigned in a random order (the colour follows the *new* id,
so the colour coding stays consistent) and the number of regions shown varies while
the mentioned ones are always drawn.

Only PIL is used (no torchvision).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from PIL import Image, ImageDraw

from .references import mentioned_objects, render, split_tokens

# A fixed colour per region id: [0] pink, [1] cyan, [2] orange, ... (RGB). Ids beyond the
# palette wrap around; max_regions in the augmenter keeps new ids inside the palette.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 105, 180),  # 0 pink
    (0, 200, 255),  # 1 cyan
    (255, 140, 0),  # 2 orange
    (140, 60, 255),  # 3 purple
    (60, 220, 60),  # 4 green
    (255, 230, 0),  # 5 yellow
    (0, 90, 255),  # 6 blue
    (230, 20, 40),  # 7 red
    (0, 160, 140),  # 8 teal
    (170, 110, 40),  # 9 brown
    (190, 190, 190),  # 10 grey
    (128, 128, 0),  # 11 olive
    (255, 160, 160),  # 12 salmon
    (120, 0, 60),  # 13 maroon
    (160, 255, 200),  # 14 mint
    (30, 30, 120),  # 15 navy
)

Box = Sequence[float]  # x1, y1, x2, y2 (extra entries such as a detector score are ignored)


def region_color(region_id: int) -> tuple[int, int, int]:
    """The fixed colour of region id ``region_id``."""
    if region_id < 0:
        raise ValueError(f"region ids are non-negative, got {region_id}")
    return PALETTE[region_id % len(PALETTE)]


def draw_regions(
    image: Image.Image,
    regions: Mapping[int, Sequence[Box]],
    alpha: float = 0.3,
    outline_width: int | None = None,
) -> Image.Image:
    """Return a copy of ``image`` with each region's boxes filled translucently and outlined in its id's colour.

    ``regions`` maps a region id to one or more boxes ``[x1, y1, x2, y2, ...]`` in pixels.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = image.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    if outline_width is None:
        outline_width = max(1, round(min(base.size) / 100))
    fill_alpha = int(round(255 * alpha))
    for region_id in sorted(regions):
        color = region_color(int(region_id))
        for box in regions[region_id]:
            if len(box) < 4:
                raise ValueError(f"region {region_id}: a box needs [x1, y1, x2, y2], got {list(box)}")
            x1, y1, x2, y2 = (float(v) for v in box[:4])
            if x2 < x1 or y2 < y1:
                raise ValueError(f"region {region_id}: box {list(box[:4])} has x2 < x1 or y2 < y1")
            draw.rectangle([x1, y1, x2, y2], fill=color + (fill_alpha,), outline=color + (255,), width=outline_width)
    return Image.alpha_composite(base, overlay).convert("RGB")


def tokens_to_text(tokens: Sequence, id_map: Mapping[int, int] | None = None) -> str:
    """VCR-style mixed tokens (words and int-list references) -> text with ``[k]`` region names.

    ``id_map`` re-assigns ids (old -> new) before rendering.
    """
    words, refs = split_tokens(tokens)
    return refs_to_text(words, refs, id_map)


def refs_to_text(words: Sequence[str], refs: Sequence[Sequence[int]], id_map: Mapping[int, int] | None = None) -> str:
    """Parallel ``words`` / ``refs`` columns -> text with ``[k]`` names (see :func:`tokens_to_text`)."""
    if id_map is not None:
        refs = [[id_map[i] for i in ref] for ref in refs]
    n = 1 + max((i for ref in refs for i in ref), default=-1)
    out, _ = render(words, refs, ["region"] * n, style="index")
    return " ".join(out)


@dataclass
class RegionAugmenter:
    """Re-assigns region ids in a random order and varies how many regions are shown.

    ``sample(mentioned, available)`` returns ``(id_map, shown)``: ``id_map`` maps each
    shown old id to a new id drawn without replacement from ``range(max_regions)`` (the
    colour follows the new id); ``shown`` are the old ids to draw: every mentioned id
    plus a random number of the other available ones.
    """

    max_regions: int = len(PALETTE)
    reassign_ids: bool = True
    vary_shown: bool = True
    min_extra: int = 0

    def sample(self, mentioned: Sequence[int], available: Sequence[int], rng: random.Random) -> tuple[dict[int, int], list[int]]:
        mentioned = sorted(set(int(i) for i in mentioned))
        missing = sorted(set(mentioned) - set(int(i) for i in available))
        if missing:
            raise ValueError(f"mentioned region ids {missing} have no box (available: {sorted(available)})")
        others = sorted(set(int(i) for i in available) - set(mentioned))
        if self.vary_shown:
            n_extra = rng.randint(min(self.min_extra, len(others)), len(others))
            extra = sorted(rng.sample(others, n_extra))
        else:
            extra = others
        shown = sorted(mentioned + extra)
        if self.reassign_ids:
            if len(shown) > self.max_regions:
                raise ValueError(f"{len(shown)} regions shown but only {self.max_regions} ids are available")
            new_ids = rng.sample(range(self.max_regions), len(shown))
            id_map = dict(zip(shown, new_ids))
        else:
            id_map = {i: i for i in shown}
        return id_map, shown


def localize(
    image: Image.Image,
    regions: Mapping[int, Sequence[Box]],
    token_lists: Sequence[Sequence],
    mentioned: Sequence[int] | None = None,
    augmenter: RegionAugmenter | None = None,
    rng: random.Random | None = None,
    alpha: float = 0.3,
    show_all: bool = True,
) -> tuple[Image.Image, list[str], dict[int, int]]:
    """Draw the regions and render the texts with ``[k]`` names, optionally augmented.

    ``token_lists`` are VCR-style mixed token lists (question, answer, ...). Without an
    augmenter ids are kept and either every region (``show_all``) or only the mentioned
    ones are drawn. Returns ``(image, texts, id_map)``.
    """
    split = [split_tokens(t) for t in token_lists]
    if mentioned is None:
        mentioned = mentioned_objects(*[refs for _, refs in split])
    if augmenter is not None:
        id_map, shown = augmenter.sample(mentioned, list(regions), rng or random.Random())
    else:
        missing = sorted(set(mentioned) - set(regions))
        if missing:
            raise ValueError(f"mentioned region ids {missing} have no box (available: {sorted(regions)})")
        shown = sorted(regions) if show_all else sorted(set(mentioned))
        id_map = {i: i for i in shown}
    drawn = draw_regions(image, {id_map[i]: regions[i] for i in shown}, alpha=alpha)
    texts = [refs_to_text(words, refs, id_map) for words, refs in split]
    return drawn, texts, id_map


def vcr_regions(row: Mapping) -> dict[int, list[list[float]]]:
    """Region id -> [box] for a ``load_vcr`` row (its detections, 0-based like the references)."""
    boxes = row.get("boxes")
    if boxes is None:
        raise ValueError(f"VCR item {row.get('annot_id')!r} has no boxes: load it with images_dir")
    return {i: [list(b[:4])] for i, b in enumerate(boxes)}


def draw_vcr_item(row: Mapping, image: Image.Image | None = None, show_all: bool = False, alpha: float = 0.3) -> Image.Image:
    """The VCR image with the objects mentioned in the question, answers and rationales highlighted."""
    if image is None:
        if not row.get("image_path"):
            raise ValueError(f"VCR item {row.get('annot_id')!r} has no image_path: load it with images_dir")
        image = Image.open(row["image_path"]).convert("RGB")
    refs = [row["question_refs"], *row["answer_choices_refs"], *(row.get("rationale_choices_refs") or [])]
    mentioned = mentioned_objects(*refs)
    regions = vcr_regions(row)
    shown = list(regions) if show_all else mentioned
    bad = [i for i in mentioned if i not in regions]
    if bad:
        raise ValueError(f"VCR item {row.get('annot_id')!r}: references {bad} out of range for {len(regions)} boxes")
    return draw_regions(image, {i: regions[i] for i in shown}, alpha=alpha)


def vcr_text(words: Sequence[str], refs: Sequence[Sequence[int]]) -> str:
    """A VCR question/answer/rationale column rendered with ``[k]`` names (LSKD's style)."""
    return refs_to_text(words, refs)
