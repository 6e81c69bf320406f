"""Region prompting: highlighted regions drawn into the image and named ``[k]`` in the text.

LSKD (Park et al., 2023, "Localized Symbolic Knowledge Distillation for Visual
Commonsense Models", section 3) lets a user point at regions: each region id ``k`` is
drawn as a translucent box in a colour that is fixed for that id across the whole
corpus (``[0]`` always gets the same colour), and the text names it ``[k]``. During
training (:class:`RegionAugmenter`, the released data pipeline by default) the regions
shown vary and are renumbered ``0..n-1`` in a random drawing order (the colour follows the
*new* id, so the colour coding stays consistent); the mentioned ones are always drawn.

Only PIL is used (no torchvision).
"""

from __future__ import annotations

import colorsys
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from PIL import Image, ImageDraw

from .references import mentioned_objects, render, split_tokens

# A fixed colour per region id: [0] pink, [1] cyan, [2] orange, ... (RGB). Ids beyond the
# palette get generated colours (see region_color), so no two ids of an image share one.
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
    """The fixed colour of region id ``region_id``: the palette, then hues spaced by the golden ratio.

    Real VCR and LSKD images have up to ~30 regions; the released code likewise switches from fixed colours to
    generated ones (merlot_reserve's ``get_color``) beyond its first ids rather than repeating colours.
    """
    if region_id < 0:
        raise ValueError(f"region ids are non-negative, got {region_id}")
    if region_id < len(PALETTE):
        return PALETTE[region_id]
    k = region_id - len(PALETTE)
    hue = (0.11 + 0.618033988749895 * k) % 1.0
    lum = 0.35 + 0.3 * ((k * 7) % 5) / 4
    return tuple(int(round(255 * c)) for c in colorsys.hls_to_rgb(hue, lum, 0.85))


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


REGION_STRATEGIES = ("released", "uniform")


@dataclass
class RegionAugmenter:
    """Chooses the regions shown in a training image and re-assigns their ids.

    ``sample(mentioned, available, rng, region_all)`` returns ``(id_map, shown)``: ``shown`` are the old ids to
    draw, in drawing order, and ``id_map`` maps each of them to its new id (the colour follows the new id).

    * ``strategy="released"`` (default; the LSKD release, ``UnifiedVQAChatGPTDataset.get_regions``): with
      probability ``mentioned_probability`` (0.5) only the mentioned regions, otherwise every region of the
      line's ``region_all``, in a random order; ids are renumbered ``0..n-1`` in that order, so ``[0]`` is the
      first region drawn. Any number of regions works.
    * ``strategy="uniform"`` (hf_vcr's earlier augmentation): the mentioned regions plus a uniformly drawn
      number of the other available ones; new ids are drawn without replacement from
      ``range(max(max_regions, n_shown))`` (an image with more regions than ``max_regions`` widens the range
      rather than failing).

    ``reassign_ids=False`` keeps the original ids (only the choice of regions varies).
    """

    strategy: str = "released"
    mentioned_probability: float = 0.5
    max_regions: int = len(PALETTE)
    reassign_ids: bool = True
    min_extra: int = 0

    def __post_init__(self):
        if self.strategy not in REGION_STRATEGIES:
            raise ValueError(f"strategy must be one of {REGION_STRATEGIES}, got {self.strategy!r}")
        if not 0.0 <= self.mentioned_probability <= 1.0:
            raise ValueError(f"mentioned_probability must be in [0, 1], got {self.mentioned_probability}")

    def sample(
        self, mentioned: Sequence[int], available: Sequence[int], rng: random.Random, region_all: Sequence[int] | None = None
    ) -> tuple[dict[int, int], list[int]]:
        mentioned = sorted(set(int(i) for i in mentioned))
        available = sorted(set(int(i) for i in available))
        missing = sorted(set(mentioned) - set(available))
        if missing:
            raise ValueError(f"mentioned region ids {missing} have no box (available: {available})")
        if self.strategy == "released":
            pool = available if region_all is None else sorted(set(int(i) for i in region_all) | set(mentioned))
            unknown = sorted(set(pool) - set(available))
            if unknown:
                raise ValueError(f"region_all ids {unknown} have no box (available: {available})")
            chosen = mentioned if rng.random() < self.mentioned_probability else pool
            shown = rng.sample(chosen, len(chosen))  # random drawing order
            return (drawing_order_ids(shown) if self.reassign_ids else {i: i for i in shown}), shown
        others = sorted(set(available) - set(mentioned))
        n_extra = rng.randint(min(self.min_extra, len(others)), len(others))
        shown = sorted(mentioned + sorted(rng.sample(others, n_extra)))
        if self.reassign_ids:
            new_ids = rng.sample(range(max(self.max_regions, len(shown))), len(shown))
            id_map = dict(zip(shown, new_ids))
        else:
            id_map = {i: i for i in shown}
        return id_map, shown


def drawing_order_ids(shown: Sequence[int]) -> dict[int, int]:
    """Renumber regions ``0..n-1`` in the order they are drawn (the released evaluation's ids and colours)."""
    return {int(old): new for new, old in enumerate(shown)}


def localize(
    image: Image.Image,
    regions: Mapping[int, Sequence[Box]],
    token_lists: Sequence[Sequence],
    mentioned: Sequence[int] | None = None,
    augmenter: RegionAugmenter | None = None,
    rng: random.Random | None = None,
    alpha: float = 0.3,
    show_all: bool = True,
    region_all: Sequence[int] | None = None,
    renumber: bool = False,
) -> tuple[Image.Image, list[str], dict[int, int]]:
    """Draw the regions and render the texts with ``[k]`` names, optionally augmented.

    ``token_lists`` are VCR-style mixed token lists (question, answer, ...). With an augmenter its
    ``sample`` decides (``region_all``: the line's shown regions, for the released strategy). Without one,
    either every region (``show_all``) or only the mentioned ones are drawn, with their own ids, or, with
    ``renumber``, renumbered ``0..n-1`` in drawing order (ascending original id; the released evaluation).
    Returns ``(image, texts, id_map)``.
    """
    split = [split_tokens(t) for t in token_lists]
    if mentioned is None:
        mentioned = mentioned_objects(*[refs for _, refs in split])
    if augmenter is not None:
        id_map, shown = augmenter.sample(mentioned, list(regions), rng or random.Random(), region_all=region_all)
    else:
        missing = sorted(set(mentioned) - set(regions))
        if missing:
            raise ValueError(f"mentioned region ids {missing} have no box (available: {sorted(regions)})")
        shown = sorted(regions) if show_all else sorted(set(mentioned))
        id_map = drawing_order_ids(shown) if renumber else {i: i for i in shown}
    drawn = draw_regions(image, {id_map[i]: regions[i] for i in shown}, alpha=alpha)
    texts = [refs_to_text(words, refs, id_map) for words, refs in split]
    return drawn, texts, id_map


def vcr_regions(row: Mapping) -> dict[int, list[list[float]]]:
    """Region id -> [box] for a ``load_vcr`` row (its detections, 0-based like the references)."""
    boxes = row.get("boxes")
    if boxes is None:
        raise ValueError(f"VCR item {row.get('annot_id')!r} has no boxes: load it with images_dir")
    return {i: [list(b[:4])] for i, b in enumerate(boxes)}


def vcr_mentioned(row: Mapping) -> list[int]:
    """Sorted object indices referenced by the question, answers and rationales of a ``load_vcr`` row."""
    refs = [row["question_refs"], *row["answer_choices_refs"], *(row.get("rationale_choices_refs") or [])]
    return mentioned_objects(*refs)


def draw_vcr_item(
    row: Mapping, image: Image.Image | None = None, show_all: bool = False, alpha: float = 0.3, id_map: Mapping[int, int] | None = None
) -> Image.Image:
    """The VCR image with the objects mentioned in the question, answers and rationales highlighted.

    Each object is drawn in the colour of its index, or of ``id_map[index]`` when given (e.g.
    :func:`drawing_order_ids` of :func:`vcr_mentioned`, the ids the zero-shot evaluation names them by).
    """
    if image is None:
        if not row.get("image_path"):
            raise ValueError(f"VCR item {row.get('annot_id')!r} has no image_path: load it with images_dir")
        image = Image.open(row["image_path"]).convert("RGB")
    mentioned = vcr_mentioned(row)
    regions = vcr_regions(row)
    shown = list(regions) if show_all else mentioned
    bad = [i for i in mentioned if i not in regions]
    if bad:
        raise ValueError(f"VCR item {row.get('annot_id')!r}: references {bad} out of range for {len(regions)} boxes")
    if id_map is not None:
        missing = [i for i in shown if i not in id_map]
        if missing:
            raise ValueError(f"VCR item {row.get('annot_id')!r}: objects {missing} have no new id in id_map")
        return draw_regions(image, {id_map[i]: regions[i] for i in shown}, alpha=alpha)
    return draw_regions(image, {i: regions[i] for i in shown}, alpha=alpha)


def vcr_text(words: Sequence[str], refs: Sequence[Sequence[int]], id_map: Mapping[int, int] | None = None) -> str:
    """A VCR question/answer/rationale column rendered with ``[k]`` names (LSKD's style), ids mapped by ``id_map``."""
    return refs_to_text(words, refs, id_map)
