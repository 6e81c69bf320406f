"""Object references in VCR-style token lists.

VCR tokens are words or lists of 0-based detection indices (``[2]`` is the third object,
``[0, 1]`` names two). They are stored in Arrow as two parallel columns, ``words`` (the
word, or ``""`` for a reference) and ``refs`` (the indices, ``[]`` for a word), and
rendered to text either r2c style (gender-neutral names for persons, class names
otherwise; Zellers et al. 2019) or as ``[k]`` ids (LSKD, Park et al. 2023). Rendering
keeps, for every output word, the index of the object it names (-1 for plain words),
so region features can be attached to the tokens that mention them.
"""

from __future__ import annotations

from typing import Sequence

# r2c's list (dataloaders/vcr.py), so a person keeps one name across question, answer and rationale.
GENDER_NEUTRAL_NAMES = [
    "Casey", "Riley", "Jessie", "Jackie", "Avery", "Jaime", "Peyton", "Kerry", "Jody", "Kendall",
    "Skyler", "Frankie", "Pat", "Quinn",
]
REFERENCE_STYLES = ("r2c", "index")


_NO_REFS: list[int] = []  # shared by every plain word: its refs are never mutated


def split_tokens(tokens: Sequence) -> tuple[list[str], list[list[int]]]:
    """Mixed VCR tokens -> (words, refs) parallel lists."""
    words, refs = [], []
    for tok in tokens:
        if tok.__class__ is str:
            words.append(tok)
            refs.append(_NO_REFS)
        else:
            words.append("")
            refs.append(tok)
    return words, refs


def join_tokens(words: Sequence[str], refs: Sequence[Sequence[int]]) -> list:
    """Inverse of :func:`split_tokens`."""
    return [list(r) if r else w for w, r in zip(words, refs)]


def object_label(index: int, object_names: Sequence[str], style: str = "r2c") -> str:
    if style == "index":
        return f"[{index}]"
    if style != "r2c":
        raise ValueError(f"unknown reference style {style!r}; choose one of {REFERENCE_STYLES}")
    name = object_names[index]
    return GENDER_NEUTRAL_NAMES[index % len(GENDER_NEUTRAL_NAMES)] if name == "person" else name


def render(
    words: Sequence[str], refs: Sequence[Sequence[int]], object_names: Sequence[str], style: str = "r2c"
) -> tuple[list[str], list[int]]:
    """Render to plain words; returns ``(words, object index per word)`` (-1 where no object).

    A multi-object reference becomes ``A and B`` / ``A , B and C`` as in r2c.
    """
    out_words: list[str] = []
    out_objs: list[int] = []
    for word, ref in zip(words, refs):
        if not ref:
            out_words.append(word)
            out_objs.append(-1)
            continue
        for j, idx in enumerate(ref):
            if j > 0:
                out_words.append("and" if j == len(ref) - 1 else ",")
                out_objs.append(-1)
            label = object_label(idx, object_names, style)
            # a class name such as "wine glass" is several words, all naming the same object
            for part in label.split():
                out_words.append(part)
                out_objs.append(idx)
    return out_words, out_objs


def mentioned_objects(*ref_lists: Sequence[Sequence[int]]) -> list[int]:
    """Sorted unique object indices referenced anywhere in the given ``refs`` columns."""
    seen = set()
    for refs in ref_lists:
        for ref in refs:
            seen.update(ref)
    return sorted(seen)
