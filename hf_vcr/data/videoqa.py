"""VideoQA corpora: NExT-QA (multiple choice), MSVD-QA and MSRVTT-QA (open-ended).

Files (see ``/work/shared/data/README.md``):

* NExT-QA ``{split}.csv`` with columns ``video,frame_count,width,height,question,answer,qid,type,a0..a4``
  (``answer`` = index of the right option) and the clip features ``app_mot_{split}.h5`` with datasets
  ``ids`` ``(N,)`` and ``feat`` ``(N, 16, 4096)`` (appearance ``[..., :2048]``, motion ``[..., 2048:]``).
* MSVD-QA / MSRVTT-QA ``{split}_qa.json`` (a JSON array of ``{"answer", "id", "question", "video_id"}``)
  or the csv re-export (``video,question,answer,qid,type``), with per-video appearance and motion
  feature files (``{dataset}_appearance_feat.h5`` / ``{dataset}_motion_feat.h5``), each holding ``ids``
  and one feature array ``(N, K, D)`` (an appearance array ``(N, K, F, D)`` of F frames per clip is
  averaged over frames). Answers are classified over the ``top_k`` most frequent answers of the train
  split (:func:`build_answer_vocab`); other answers get ``label = -100``.

Annotations become ``datasets.Dataset`` objects (``Dataset.from_generator``, cached as Arrow). Clip
features are never loaded whole: :class:`ClipFeatureStore` keeps only the id -> row index and reads
the rows of a batch from the h5 file when :class:`VideoQaCollator` builds the batch; a row holding NaN or
inf is an error naming the file, row and video. :func:`check_clip_features` checks, before training, that the
splits and the model agree on feature width and clip count and that every feature is finite.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..utils.csv_files import read_csv_rows
from ..utils.json_files import decode_utf8, load_json_file

NEXTQA_COLUMNS = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4"]
NEXTQA_NUM_CHOICES = 5
NEXTQA_OPTION_COLUMNS = [f"a{i}" for i in range(NEXTQA_NUM_CHOICES)]
NEXTQA_TYPES = ("CW", "CH", "TN", "TP", "TC", "DC", "DL", "DO")
OPEN_ENDED_JSON_KEYS = ("answer", "id", "question", "video_id")
OPEN_ENDED_CSV_COLUMNS = ["video", "question", "answer", "qid"]
QUESTION_WORDS = ("what", "who", "how", "when", "where", "why", "which")


class VideoQaFormatError(ValueError):
    """A VideoQA file that does not have the documented layout (the message names file and line/record)."""


def _check_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")


def _int(value: Any, path: str, where: str, field: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise VideoQaFormatError(f"{path}, {where}: field {field!r} must be an integer, got {value!r}") from None


# --------------------------------------------------------------------------------------------- NExT-QA
def read_nextqa_csv(path: str) -> list[dict[str, Any]]:
    """Read a NExT-QA multiple-choice csv into dicts (``answer`` and ``qid`` as int, ``options`` list)."""
    records = []
    seen: dict[str, int] = {}
    for line_no, row in read_csv_rows(path, "NExT-QA annotation csv", VideoQaFormatError, NEXTQA_COLUMNS):
        where = f"line {line_no}"
        answer = _int(row["answer"], path, where, "answer")
        if not 0 <= answer < NEXTQA_NUM_CHOICES:
            raise VideoQaFormatError(f"{path}, {where}: answer {answer} is not an option index in [0, {NEXTQA_NUM_CHOICES})")
        qtype = row["type"].strip()
        if qtype not in NEXTQA_TYPES:
            raise VideoQaFormatError(f"{path}, {where}: unknown question type {qtype!r} (expected one of {NEXTQA_TYPES})")
        video = row["video"].strip()
        if not video:
            raise VideoQaFormatError(f"{path}, {where}: empty video id")
        qid = _int(row["qid"], path, where, "qid")
        key = f"{video}_{qid}"
        if key in seen:
            raise VideoQaFormatError(f"{path}, {where} ({key}): duplicate question (first on line {seen[key]})")
        seen[key] = line_no
        records.append(
            {
                "key": key,
                "video": video,
                "qid": qid,
                "question": row["question"].strip(),
                "options": [row[c].strip() for c in NEXTQA_OPTION_COLUMNS],
                "answer": answer,
                "type": qtype,
                "frame_count": _int(row["frame_count"] or 0, path, where, "frame_count"),
            }
        )
    if not records:
        raise VideoQaFormatError(f"{path}: no questions")
    return records


def _stamp(path: str) -> str:
    """Part of the Arrow cache fingerprint: a changed file is re-read, not served from a stale cache."""
    st = os.stat(path)
    return f"{st.st_mtime_ns}-{st.st_size}"


def _nextqa_generator(path: str, stamp: str = "") -> Iterator[dict[str, Any]]:
    for rec in read_nextqa_csv(path):
        rec = dict(rec)
        rec["labels"] = rec["answer"]
        yield rec


def load_nextqa(csv_path: str, features: "ClipFeatureStore | None" = None, cache_dir: str | None = None):
    """NExT-QA annotations as a ``datasets.Dataset`` (Arrow-cached).

    Columns: ``key`` (``"{video}_{qid}"``, the official prediction key), ``video``, ``qid``, ``question``,
    ``options`` (5 strings), ``answer`` / ``labels`` (right option), ``type``, ``frame_count``.
    With ``features``, every video must have a row in the feature file (checked from the ids only).
    """
    from datasets import Dataset

    csv_path = os.path.abspath(csv_path)
    read_nextqa_csv(csv_path)  # validate eagerly: errors name the line, not a generator traceback
    ds = Dataset.from_generator(_nextqa_generator, gen_kwargs={"path": csv_path, "stamp": _stamp(csv_path)}, cache_dir=cache_dir)
    if features is not None:
        features.check_covers(ds["video"], csv_path)
    return ds


# ----------------------------------------------------------------------------------- MSVD-QA / MSRVTT-QA
def question_word(question: str) -> str:
    """The question word used for the per-type accuracy of MSVD-QA / MSRVTT-QA (``other`` if none)."""
    words = re.findall(r"[a-z]+", question.lower())
    return words[0] if words and words[0] in QUESTION_WORDS else "other"


def read_open_ended_qa(path: str) -> list[dict[str, Any]]:
    """Read MSVD-QA / MSRVTT-QA annotations: the original ``{split}_qa.json`` or the csv re-export.

    Returns dicts with ``key`` (the question id as str), ``qid``, ``video`` (str), ``question``, ``answer``
    and ``question_word``.
    """
    _check_file(path, "open-ended VideoQA annotation file")
    records, where_of = [], []
    if path.lower().endswith(".json"):
        data = load_json_file(path, "open-ended VideoQA annotation file", VideoQaFormatError, list, "a JSON array of questions")
        for i, item in enumerate(data):
            where = f"record {i}"
            if not isinstance(item, dict):
                raise VideoQaFormatError(f"{path}, {where}: expected an object, got {type(item).__name__}")
            missing = [k for k in OPEN_ENDED_JSON_KEYS if k not in item]
            if missing:
                raise VideoQaFormatError(f"{path}, {where}: missing keys {missing}")
            qid = _int(item["id"], path, where, "id")
            if isinstance(item["video_id"], (dict, list, bool)) or item["video_id"] is None:
                raise VideoQaFormatError(f"{path}, {where} ({qid}): video_id must be a string or an integer, got {item['video_id']!r}")
            records.append(_open_record(str(qid), qid, str(item["video_id"]), item["question"], item["answer"], path, where))
            where_of.append(where)
    else:
        for line_no, row in read_csv_rows(path, "open-ended VideoQA annotation csv", VideoQaFormatError, OPEN_ENDED_CSV_COLUMNS):
            where = f"line {line_no}"
            qid = _int(row["qid"], path, where, "qid")
            records.append(_open_record(str(qid), qid, row["video"].strip(), row["question"], row["answer"], path, where))
            where_of.append(where)
    if not records:
        raise VideoQaFormatError(f"{path}: no questions")
    first: dict[str, str] = {}
    for rec, where in zip(records, where_of):
        if rec["key"] in first:
            raise VideoQaFormatError(f"{path}, {where} ({rec['key']}): duplicate question id (first at {first[rec['key']]})")
        first[rec["key"]] = where
    return records


def _open_record(key, qid, video, question, answer, path, where) -> dict[str, Any]:
    if not isinstance(question, str) or not question.strip():
        raise VideoQaFormatError(f"{path}, {where} ({key}): empty or non-string question: {question!r}")
    if not isinstance(answer, str) or not answer.strip():
        raise VideoQaFormatError(f"{path}, {where} ({key}): empty or non-string answer: {answer!r}")
    return {
        "key": key,
        "qid": qid,
        "video": video,
        "question": question.strip(),
        "answer": answer.strip(),
        "question_word": question_word(question),
    }


def read_answer_set(path: str) -> list[str]:
    """An answer vocabulary file, one answer per line (e.g. MSVD-QA's ``answer_set.txt``)."""
    _check_file(path, "answer set")
    with open(path, "rb") as f:
        lines = decode_utf8(f.read(), path, VideoQaFormatError).splitlines()
    answers, first = [], {}
    for line_no, line in enumerate(lines, start=1):
        answer = line.strip()
        if not answer:
            continue
        if answer in first:
            raise VideoQaFormatError(f"{path}, line {line_no}: duplicate answer {answer!r} (first on line {first[answer]})")
        first[answer] = line_no
        answers.append(answer)
    if not answers:
        raise VideoQaFormatError(f"{path}: no answers (empty file)")
    return answers


def build_answer_vocab(answers: Iterable[str], top_k: int = 1000) -> list[str]:
    """The ``top_k`` most frequent answers (ties broken alphabetically): the classes of open-ended VideoQA.

    Build it from the *train* split's answers; val/test answers outside it are counted wrong.
    """
    counts = Counter(a.strip() for a in answers)
    return [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]]


def _open_generator(path: str, answer_vocab_json: str, drop_unknown: bool, stamp: str = "") -> Iterator[dict[str, Any]]:
    index = {a: i for i, a in enumerate(json.loads(answer_vocab_json))}
    for rec in read_open_ended_qa(path):
        label = index.get(rec["answer"], -100)
        if label < 0 and drop_unknown:
            continue
        yield {**rec, "labels": label}


def load_open_ended_qa(
    path: str,
    answer_vocab: Sequence[str],
    features: "ClipFeatureStore | None" = None,
    drop_unknown_answers: bool = False,
    cache_dir: str | None = None,
):
    """MSVD-QA / MSRVTT-QA annotations as a ``datasets.Dataset`` with ``labels`` = index in ``answer_vocab`` or -100.

    ``drop_unknown_answers=True`` (for the train split) removes questions whose answer is outside the vocabulary.
    """
    from datasets import Dataset

    if not answer_vocab:
        raise ValueError("answer_vocab is empty")
    path = os.path.abspath(path)
    records = read_open_ended_qa(path)
    if drop_unknown_answers and not set(answer_vocab) & {r["answer"] for r in records}:
        raise VideoQaFormatError(f"{path}: no question has an answer in the answer vocabulary ({len(answer_vocab)} answers, "
                                 f"e.g. {list(answer_vocab)[:3]}): is it the vocabulary of this dataset?")
    ds = Dataset.from_generator(
        _open_generator,
        # (a list in gen_kwargs would be taken as shards by datasets: pass the vocabulary as one JSON string)
        gen_kwargs={"path": path, "answer_vocab_json": json.dumps(list(answer_vocab)), "drop_unknown": drop_unknown_answers, "stamp": _stamp(path)},
        cache_dir=cache_dir,
    )
    if features is not None:
        features.check_covers(ds["video"], path)
    return ds


def load_msvd_qa(path: str, answer_vocab: Sequence[str], **kwargs):
    """MSVD-QA (``{split}_qa.json``); see :func:`load_open_ended_qa`."""
    return load_open_ended_qa(path, answer_vocab, **kwargs)


def load_msrvtt_qa(path: str, answer_vocab: Sequence[str], **kwargs):
    """MSRVTT-QA (``{split}_qa.json`` or the csv re-export); see :func:`load_open_ended_qa`."""
    return load_open_ended_qa(path, answer_vocab, **kwargs)


# -------------------------------------------------------------------------------------------- features
def _decode_id(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return str(x)


class _H5Array:
    """One feature array of an h5 file, opened lazily (and re-opened in a forked worker)."""

    def __init__(self, path: str, key: str | None):
        _check_file(path, "clip feature file")
        import h5py

        self.path = os.path.abspath(path)
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:  # h5py's message names neither the file nor what it expected
            raise VideoQaFormatError(f"{self.path}: not a readable HDF5 clip feature file ({e})") from None
        with f:
            if "ids" not in f:
                raise VideoQaFormatError(f"{self.path}: no 'ids' dataset (found {sorted(f.keys())})")
            if key is None:
                candidates = [k for k in f.keys() if k != "ids" and isinstance(f[k], h5py.Dataset)]
                if len(candidates) != 1:
                    raise VideoQaFormatError(
                        f"{self.path}: cannot tell which dataset holds the features among {candidates}; pass the key"
                    )
                key = candidates[0]
            if key not in f:
                raise VideoQaFormatError(f"{self.path}: no feature dataset {key!r} (found {sorted(f.keys())})")
            ids = [_decode_id(x) for x in f["ids"][()]]
            shape = f[key].shape
        if len(shape) not in (3, 4):
            raise VideoQaFormatError(f"{self.path}: feature dataset {key!r} must be (N, K, D) or (N, K, F, D), got {shape}")
        if shape[0] != len(ids):
            raise VideoQaFormatError(f"{self.path}: 'ids' has {len(ids)} entries but {key!r} has {shape[0]} rows")
        self.key, self.shape, self.ids = key, shape, ids
        self.row = {}
        for i, vid in enumerate(ids):
            if vid in self.row:
                raise VideoQaFormatError(f"{self.path}: video id {vid!r} appears twice in 'ids' (rows {self.row[vid]} and {i})")
            self.row[vid] = i
        self._file = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def _dataset(self):
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[self.key]

    def read(self, rows: Sequence[int]) -> np.ndarray:
        rows = np.asarray(rows)
        order = np.argsort(rows, kind="stable")
        unique, inverse = np.unique(rows[order], return_inverse=True)
        block = self._dataset()[unique.tolist()]  # h5py fancy indexing needs increasing indices
        out = np.empty((len(rows),) + block.shape[1:], dtype=block.dtype)
        out[order] = block[inverse]
        if not np.isfinite(out).all():  # caught before a model trains on it
            bad = int(rows[np.flatnonzero(~np.isfinite(out.reshape(len(rows), -1)).all(1))[0]])
            raise VideoQaFormatError(f"{self.path}: {self.key!r} row {bad} (video {self.ids[bad]!r}) holds NaN or inf")
        if out.ndim == 4:  # (B, K, F, D): average the frames of each clip
            out = out.mean(axis=2)
        return out.astype(np.float32, copy=False)

    def check_finite(self, chunk_rows: int = 1024) -> None:
        """Scan the whole feature array (in chunks of rows) for NaN / inf; the error names the row and video."""
        data = self._dataset()
        for start in range(0, self.shape[0], chunk_rows):
            block = np.asarray(data[start:start + chunk_rows])
            finite = np.isfinite(block.reshape(len(block), -1)).all(1)
            if not finite.all():
                bad = start + int(np.flatnonzero(~finite)[0])
                raise VideoQaFormatError(f"{self.path}: {self.key!r} row {bad} (video {self.ids[bad]!r}) holds NaN or inf")


class ClipFeatureStore:
    """Per-video clip features ``[K, D]`` read lazily from one or more h5 files (concatenated on D).

    * NExT-QA: ``ClipFeatureStore.nextqa("vid_feat/app_mot_val.h5")`` (datasets ``ids`` and ``feat``).
    * MSVD-QA / MSRVTT-QA: ``ClipFeatureStore.appearance_motion(app_h5, mot_h5)``: appearance then motion.

    Only the ids are read at construction; ``store.get(videos)`` reads the rows of one batch.
    """

    def __init__(self, files: Sequence[tuple[str, str | None]]):
        if not files:
            raise ValueError("ClipFeatureStore needs at least one (path, key) pair")
        self.arrays = [_H5Array(path, key) for path, key in files]
        first = self.arrays[0]
        self.ids = list(first.row)
        for arr in self.arrays[1:]:
            if arr.shape[1] != first.shape[1]:
                raise VideoQaFormatError(f"{arr.path} has {arr.shape[1]} clips per video but {first.path} has {first.shape[1]}")
            missing = [v for v in self.ids if v not in arr.row]
            if missing:
                raise VideoQaFormatError(f"{arr.path}: no features for {len(missing)} videos of {first.path}, e.g. {missing[:3]}")
        self.index = {vid: i for i, vid in enumerate(self.ids)}

    @classmethod
    def nextqa(cls, path: str, key: str = "feat") -> "ClipFeatureStore":
        return cls([(path, key)])

    @classmethod
    def appearance_motion(cls, appearance_path: str, motion_path: str, appearance_key: str | None = None, motion_key: str | None = None):
        return cls([(appearance_path, appearance_key), (motion_path, motion_key)])

    @property
    def num_clips(self) -> int:
        return self.arrays[0].shape[1]

    @property
    def dim(self) -> int:
        return sum(a.shape[-1] for a in self.arrays)

    def __contains__(self, video: Any) -> bool:
        return _decode_id(video) in self.index

    def __len__(self) -> int:
        return len(self.ids)

    def video_index(self, video: Any) -> int:
        """A stable integer per video (its position in the first file), used to tell videos apart."""
        vid = _decode_id(video)
        if vid not in self.index:
            raise KeyError(f"no clip features for video {vid!r} in {self.arrays[0].path}")
        return self.index[vid]

    def check_covers(self, videos: Iterable[Any], source: str) -> None:
        missing = sorted({_decode_id(v) for v in videos} - set(self.index))
        if missing:
            raise VideoQaFormatError(
                f"{source}: {len(missing)} videos have no clip features in {self.arrays[0].path}, e.g. {missing[:5]}"
            )

    def check_finite(self) -> None:
        """Read every feature once and refuse NaN / inf (the error names the file, row and video)."""
        for arr in self.arrays:
            arr.check_finite()

    def get(self, videos: Sequence[Any]) -> np.ndarray:
        """Features of a batch of videos, ``[B, K, D]`` float32."""
        parts = []
        for arr in self.arrays:
            rows = []
            for v in videos:
                vid = _decode_id(v)
                if vid not in arr.row:
                    raise KeyError(f"no clip features for video {vid!r} in {arr.path}")
                rows.append(arr.row[vid])
            parts.append(arr.read(rows))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def check_clip_features(
    stores: dict[str, ClipFeatureStore], visual_dim: int | None = None, num_clips: int | None = None, scan_values: bool = True
) -> None:
    """Checks a VideoQA run makes before it trains (EIGV's flow calls it at start): every store (``{"train": store,
    "validation": store}``) has the same feature width and clip count as the first one and as the model
    (``visual_dim`` / ``num_clips``, e.g. a warm-started checkpoint's config), and, with ``scan_values``, holds only
    finite numbers (one chunked pass over each file; a batch with NaN is refused when read in any case)."""
    if not stores:
        raise ValueError("check_clip_features needs at least one feature store")
    (first_name, first), *others = stores.items()
    expected = {"width": (visual_dim, "the model's visual_dim"), "clips": (num_clips, "the model's num_clips")}
    for name, store in [(first_name, first)] + others:
        files = " + ".join(a.path for a in store.arrays)
        for what, got in (("width", store.dim), ("clips", store.num_clips)):
            want, source = expected[what]
            if want is None:
                expected[what] = (got, f"{first_name} features ({' + '.join(a.path for a in first.arrays)})")
            elif got != want:
                unit = "feature width" if what == "width" else "clips per video"
                raise VideoQaFormatError(f"{files}: {name} features have {got} {unit}, but {source} {'has' if 'model' in source else 'have'} {want}")
        if scan_values:
            store.check_finite()


# -------------------------------------------------------------------------------------------- collator
class VideoQaCollator:
    """Turns dataset rows into model inputs, reading the clip features of the batch from h5.

    Multiple choice (rows with ``options``): ``input_ids`` ``[B, C, L]`` = tokenizer(question, option) per option.
    Open-ended: ``input_ids`` ``[B, L]``. Always ``clip_features`` ``[B, K, D]``, ``labels`` ``[B]`` and
    ``video_index`` ``[B]`` (an integer per video, used by EIGV to keep a video's own clips out of its negatives).
    """

    def __init__(self, tokenizer, features: ClipFeatureStore, max_length: int = 64):
        self.tokenizer = tokenizer
        self.features = features
        self.max_length = max_length

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        videos = [r["video"] for r in rows]
        clips = torch.from_numpy(self.features.get(videos))
        multiple_choice = "options" in rows[0]
        if multiple_choice:
            n = len(rows[0]["options"])
            for r in rows:
                if len(r["options"]) != n:
                    raise VideoQaFormatError(f"question {r.get('key')!r} has {len(r['options'])} options, expected {n}")
            questions = [r["question"] for r in rows for _ in range(n)]
            options = [o for r in rows for o in r["options"]]
            enc = self.tokenizer(questions, options, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc = {k: v.reshape(len(rows), n, -1) for k, v in enc.items()}
        else:
            enc = dict(
                self.tokenizer([r["question"] for r in rows], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            )
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        batch["clip_features"] = clips
        batch["labels"] = torch.tensor([int(r["labels"]) for r in rows], dtype=torch.long)
        batch["video_index"] = torch.tensor([self.features.video_index(v) for v in videos], dtype=torch.long)
        return batch


__all__ = [
    "NEXTQA_COLUMNS",
    "NEXTQA_TYPES",
    "VideoQaFormatError",
    "read_nextqa_csv",
    "load_nextqa",
    "read_open_ended_qa",
    "read_answer_set",
    "build_answer_vocab",
    "question_word",
    "load_open_ended_qa",
    "load_msvd_qa",
    "load_msrvtt_qa",
    "ClipFeatureStore",
    "check_clip_features",
    "VideoQaCollator",
]
