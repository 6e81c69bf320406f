"""Region prompting: fixed colours, [k] rewriting, id re-assignment, VCR items (real sample image)."""

import os
import random

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
import torch
from PIL import Image

from hf_vcr.data.regions import (
    PALETTE,
    RegionAugmenter,
    draw_regions,
    draw_vcr_item,
    localize,
    region_color,
    tokens_to_text,
)

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine

VCR_DIR = os.path.join(str(SHARED_DATA), "vcr")


def _blank(size=(40, 30), color=(0, 0, 0)):
    return Image.new("RGB", size, color)


def test_fixed_colour_per_id_and_translucent_fill():
    assert region_color(0) == PALETTE[0]
    # beyond the palette: generated colours, all distinct (real images have up to ~30 regions)
    assert len({region_color(i) for i in range(40)}) == 40
    img = draw_regions(_blank(), {0: [[5, 5, 20, 20]], 3: [[22, 5, 35, 25]]}, alpha=0.5)
    a = np.asarray(img).astype(int)
    # inside box 0: half of pink over black; outline: full pink; outside: untouched
    assert np.allclose(a[12, 12], np.array(PALETTE[0]) * 0.5, atol=2)
    assert tuple(a[5, 12]) == PALETTE[0]
    assert np.allclose(a[15, 28], np.array(PALETTE[3]) * 0.5, atol=2)
    assert tuple(a[28, 2]) == (0, 0, 0)
    # the same id gets the same colour in another image
    b = np.asarray(draw_regions(_blank(), {0: [[0, 0, 10, 10]]}, alpha=0.5)).astype(int)
    assert np.allclose(b[5, 5], a[12, 12], atol=1)


def test_bad_boxes_are_rejected():
    with pytest.raises(ValueError, match="x2 < x1"):
        draw_regions(_blank(), {1: [[10, 0, 5, 5]]})
    with pytest.raises(ValueError, match="needs"):
        draw_regions(_blank(), {1: [[1, 2]]})


def test_int_list_references_become_index_names():
    assert tokens_to_text(["What", "is", [2], "doing", "with", [0, 1], "?"]) == "What is [2] doing with [0] and [1] ?"
    assert tokens_to_text(["Is", [2], "near", [4], "?"], id_map={2: 0, 4: 7}) == "Is [0] near [7] ?"


def test_released_augmentation_mentioned_or_region_all_renumbered_in_drawing_order():
    """Released pipeline: 1/2 only the mentioned regions, 1/2 region_all, random order, ids 0..n-1 in that order."""
    rng = random.Random(0)
    aug = RegionAugmenter()
    regions = {i: [[4 * i, 0, 4 * i + 3, 3]] for i in range(30)}
    region_all = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]
    seen = {"mentioned": 0, "all": 0}
    orders = set()
    for _ in range(400):
        id_map, shown = aug.sample([3, 7], list(regions), rng, region_all=region_all)
        assert id_map == {old: new for new, old in enumerate(shown)}  # renumbered 0..n-1 in drawing order
        if sorted(shown) == [3, 7]:
            seen["mentioned"] += 1
        else:
            assert sorted(shown) == region_all
            seen["all"] += 1
        orders.add(tuple(shown))
    assert 160 < seen["mentioned"] < 240 and seen["mentioned"] + seen["all"] == 400
    assert len(orders) > 100  # random drawing orders
    # without region_all: every available region; many more regions than the palette works
    id_map, shown = aug.sample([3], list(regions), random.Random(1), region_all=None)
    assert sorted(id_map.values()) == list(range(len(shown)))
    with pytest.raises(ValueError, match="no box"):
        aug.sample([3], list(regions), rng, region_all=[3, 99])


@pytest.mark.parametrize("n_regions", [12, 30])
def test_uniform_augmentation_with_more_regions_than_max_regions(n_regions):
    """The earlier augmentation no longer fails on images with more regions than max_regions (issue 14)."""
    rng = random.Random(0)
    aug = RegionAugmenter(strategy="uniform", max_regions=8)
    regions = {i: [[i, 0, i + 1, 1]] for i in range(n_regions)}
    for _ in range(50):
        id_map, shown = aug.sample([0, 5], list(regions), rng)
        assert {0, 5} <= set(shown) and len(set(id_map.values())) == len(shown)
        assert max(id_map.values()) < max(8, len(shown))


def test_augmentation_reassigns_ids_keeps_colour_with_id_and_always_draws_mentioned():
    rng = random.Random(0)
    aug = RegionAugmenter(strategy="uniform", max_regions=8)
    regions = {0: [[0, 0, 9, 9]], 1: [[10, 0, 19, 9]], 2: [[20, 0, 29, 9]], 3: [[30, 0, 39, 9]], 4: [[0, 10, 9, 19]]}
    n_shown, maps = set(), set()
    for _ in range(60):
        img, texts, id_map = localize(_blank(), regions, [["Why", "is", [1], "near", [3], "?"]], augmenter=aug, rng=rng, alpha=1.0)
        assert 1 in id_map and 3 in id_map  # mentioned regions always drawn
        assert texts[0] == f"Why is [{id_map[1]}] near [{id_map[3]}] ?"
        a = np.asarray(img)
        for old, new in id_map.items():  # each drawn box has the colour of its NEW id
            x1, y1 = regions[old][0][:2]
            assert tuple(a[y1 + 4, x1 + 4]) == region_color(new)
        for old in set(regions) - set(id_map):
            x1, y1 = regions[old][0][:2]
            assert tuple(a[y1 + 4, x1 + 4]) == (0, 0, 0)
        assert len(set(id_map.values())) == len(id_map)
        n_shown.add(len(id_map))
        maps.add(tuple(sorted(id_map.items())))
    assert len(n_shown) >= 3  # the number of regions shown varies
    assert len(maps) > 20  # ids are re-assigned randomly


def test_mentioned_region_without_box_is_an_error():
    with pytest.raises(ValueError, match=r"\[7\]"):
        localize(_blank(), {0: [[0, 0, 5, 5]]}, [["Is", [7], "here", "?"]])


@pytest.mark.real_data
def test_vcr_item_real_image():
    from hf_vcr.data.vcr import load_vcr

    ds = load_vcr(os.path.join(VCR_DIR, "val_sample_from_VLE_README.jsonl"), VCR_DIR, images_dir=os.path.join(VCR_DIR, "vcr1images"))
    row = ds[0]
    img = draw_vcr_item(row, alpha=1.0)
    assert img.size == (row["width"], row["height"])
    a = np.asarray(img)
    orig = np.asarray(Image.open(row["image_path"]).convert("RGB"))
    # objects 0, 1, 2 are referenced by val-1: each outline is drawn in its id's colour
    for k in (0, 1, 2):
        x1, y1, x2, y2 = (int(round(v)) for v in row["boxes"][k][:4])
        assert tuple(a[y1 + 1, (x1 + x2) // 2]) == region_color(k)
    # object 5 (a clock, never referenced) is not drawn
    x1, y1, x2, y2 = (int(v) for v in row["boxes"][5][:4])
    assert np.array_equal(a[y1 + 20, x1 + 20], orig[y1 + 20, x1 + 20])
    from hf_vcr.data.regions import vcr_text

    assert vcr_text(row["question"], row["question_refs"]) == "Does [0] live in this house ?"
