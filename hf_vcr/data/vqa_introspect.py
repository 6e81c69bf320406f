"""VQA-Introspect joined with VQAv2: one row per <image, reasoning question>.

The VQA-Introspect json (``VQAIntrospect_{train,val}v1.0.json``) is a dict keyed by the
VQAv2 question id of the reasoning question; each value has ``image_id``,
``reasoning_question``, ``reasoning_answer_most_common`` and ``introspect``, a list of
``{"sub_qa": [{"sub_question", "sub_answer"}], "pred_q_type": "reasoning"|"perception"|"invalid"}``
(one entry per annotator). SOrT (Dharur et al., 2021, section 4) pools it with VQAv2 so
that every reasoning question has its sub-questions (with answers) and its *irrelevant*
questions: the other VQAv2 questions on the same image that are not its sub-questions.

Without the VQAv2 files the loader still works; rows then carry no irrelevant questions,
which is the paper's "only SQ" setting.

Answers carry VQA soft scores ``min(#annotators who gave the answer / 3, 1)``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Iterable, Sequence

import datasets

from ..utils.json_files import load_json_file

__all__ = [
    "load_vqa_introspect",
    "read_introspect_json",
    "read_vqa_questions",
    "read_vqa_annotations",
    "normalize_answer",
    "vqa_soft_scores",
    "build_answer_vocab",
    "tokenize_sort_examples",
    "SortCollator",
    "VQA_INTROSPECT_FEATURES",
]

VQA_INTROSPECT_FEATURES = datasets.Features(
    {
        "question_id": datasets.Value("string"),
        "image_id": datasets.Value("int64"),
        "reasoning_question": datasets.Value("string"),
        "reasoning_answer": datasets.Value("string"),
        "reasoning_answers": datasets.List({"answer": datasets.Value("string"), "score": datasets.Value("float32")}),
        "sub_questions": datasets.List(datasets.Value("string")),
        "sub_answers": datasets.List(datasets.Value("string")),
        "irrelevant_question_ids": datasets.List(datasets.Value("string")),
        "irrelevant_questions": datasets.List(datasets.Value("string")),
        "irrelevant_answers": datasets.List(datasets.Value("string")),
        "irrelevant_answer_scores": datasets.List(
            datasets.List({"answer": datasets.Value("string"), "score": datasets.Value("float32")})
        ),
    }
)

# --------------------------------------------------------------------------- answers
# The official VQA evaluation (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py, v2.0 at commit
# a013f00): its number words, articles, punctuation list and the table that restores contractions typed without
# their apostrophe.
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# a period not followed by a digit ("(?!<=\d)" in the official pattern is a look-ahead that never matches before a
# period, so it changes nothing); the official call passes re.UNICODE (32) as sub's count: at most 32 are removed
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_CONTRACTIONS = {
    "'ow'sat": "'ow's'at", "'ows'at": "'ow's'at", "I'dve": "I'd've", "Id've": "I'd've", 'Im': "I'm", 'Ive': "I've",
    'aint': "ain't", 'arent': "aren't", 'cant': "can't", "couldn'tve": "couldn't've", 'couldnt': "couldn't",
    "couldnt've": "couldn't've", 'couldve': "could've", 'didnt': "didn't", 'doesnt': "doesn't", 'dont': "don't",
    "hadn'tve": "hadn't've", 'hadnt': "hadn't", "hadnt've": "hadn't've", 'hasnt': "hasn't", 'havent': "haven't",
    "he'dve": "he'd've", 'hed': "he'd", "hed've": "he'd've", 'hes': "he's", 'howd': "how'd", 'howll': "how'll",
    'hows': "how's", 'isnt': "isn't", "it'dve": "it'd've", 'itd': "it'd", "itd've": "it'd've", 'itll': "it'll",
    "let's": "let's", 'maam': "ma'am", "mightn'tve": "mightn't've", 'mightnt': "mightn't",
    "mightnt've": "mightn't've", 'mightve': "might've", 'mustnt': "mustn't", 'mustve': "must've",
    'neednt': "needn't", 'notve': "not've", 'oclock': "o'clock", 'oughtnt': "oughtn't", "ow's'at": "'ow's'at",
    'shant': "shan't", "she'dve": "she'd've", "she's": "she's", "shed've": "she'd've", "shouldn'tve": "shouldn't've",
    'shouldnt': "shouldn't", "shouldnt've": "shouldn't've", 'shouldve': "should've", "somebody'd": 'somebodyd',
    "somebody'dve": "somebody'd've", "somebodyd've": "somebody'd've", 'somebodyll': "somebody'll",
    'somebodys': "somebody's", "someone'dve": "someone'd've", 'someoned': "someone'd", "someoned've": "someone'd've",
    'someonell': "someone'll", 'someones': "someone's", "something'dve": "something'd've",
    'somethingd': "something'd", "somethingd've": "something'd've", 'somethingll': "something'll", 'thats': "that's",
    "there'dve": "there'd've", 'thered': "there'd", "thered've": "there'd've", 'therere': "there're",
    'theres': "there's", "they'dve": "they'd've", 'theyd': "they'd", "theyd've": "they'd've", 'theyll': "they'll",
    'theyre': "they're", 'theyve': "they've", 'twas': "'twas", 'wasnt': "wasn't", "we'dve": "we'd've",
    "wed've": "we'd've", 'werent': "weren't", 'weve': "we've", 'whatll': "what'll", 'whatre': "what're",
    'whats': "what's", 'whatve': "what've", 'whens': "when's", 'whered': "where'd", 'wheres': "where's",
    'whereve': "where've", "who'dve": "who'd've", 'whod': "who'd", "whod've": "who'd've", 'wholl': "who'll",
    'whos': "who's", 'whove': "who've", 'whyll': "why'll", 'whyre': "why're", 'whys': "why's", 'wont': "won't",
    "wouldn'tve": "wouldn't've", 'wouldnt': "wouldn't", "wouldnt've": "wouldn't've", 'wouldve': "would've",
    "y'all'dve": "y'all'd've", "y'alld've": "y'all'd've", "y'allll": "y'all'll", 'yall': "y'all",
    "yall'd've": "y'all'd've", "yall'll": "y'all'll", "you'dve": "you'd've", 'youd': "you'd", "youd've": "you'd've",
    'youll': "you'll", 'youre': "you're", 'youve': "you've",
}


def _process_punctuation(text: str) -> str:
    # a mark next to a space (or any text with a comma between digits) is deleted; elsewhere it separates words
    delete = _COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for p in _PUNCTUATION:
        out = out.replace(p, "" if delete or p + " " in text or " " + p in text else " ")
    return _PERIOD.sub("", out, count=32)


def _process_digit_article(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """The official VQA evaluation's processing of an answer (``vqaEval.py`` v2.0): newlines and tabs to spaces,
    strip, ``processPunctuation`` (``;/[]"{}()=+\\_-><@`,?!`` deleted next to a space or when the text has a comma
    between digits, replaced by a space elsewhere; periods not followed by a digit deleted), then
    ``processDigitArticle`` (lower case, number words ``none``/``zero``..``ten`` to digits, articles dropped,
    contractions typed without apostrophe restored: ``dont`` -> ``don't``).

    The official script applies it to a question's human answers (and the prediction) only when the humans gave
    more than one distinct answer; hf_vcr always applies it, so the same answer is always spelled the same way.
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def _normalize_question(question: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", question.lower()).split())


def vqa_soft_scores(answers: Iterable[str]) -> dict[str, float]:
    """``answer -> min(#annotators who gave it / 3, 1)`` for one question's human answers."""
    counts = Counter(normalize_answer(a) for a in answers)
    counts.pop("", None)
    return {a: min(c / 3.0, 1.0) for a, c in counts.items()}


# ------------------------------------------------------------------------------ files
def read_introspect_json(path: str) -> dict[str, dict]:
    """Read and validate a VQA-Introspect json; errors name the file, the question id and the field."""
    data = load_json_file(path, "VQA-Introspect file", expect=dict, expected="a JSON object keyed by question id")
    for qid, rec in data.items():
        where = f"{path}, question id {qid}"
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: a record must be an object, got {type(rec).__name__}")
        for key in ("image_id", "reasoning_question", "reasoning_answer_most_common", "introspect"):
            if key not in rec:
                raise ValueError(f"{where}: missing field {key!r}")
        if not isinstance(rec["introspect"], list):
            raise ValueError(f"{where}: 'introspect' must be a list")
        if isinstance(rec["image_id"], bool) or not isinstance(rec["image_id"], (int, str)) or not str(rec["image_id"]).strip().isdigit():
            raise ValueError(f"{where}: image_id {rec['image_id']!r} is not an integer")
        if not isinstance(rec["reasoning_question"], str) or not rec["reasoning_question"].strip():
            raise ValueError(f"{where}: reasoning_question must be a non-empty string, got {rec['reasoning_question']!r}")
        if not isinstance(rec["reasoning_answer_most_common"], (str, int)) or isinstance(rec["reasoning_answer_most_common"], bool):
            raise ValueError(f"{where}: reasoning_answer_most_common must be a string, got {rec['reasoning_answer_most_common']!r}")
        for j, entry in enumerate(rec["introspect"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("sub_qa"), list):
                raise ValueError(f"{where}: introspect[{j}] must be an object with a 'sub_qa' list")
            if entry.get("pred_q_type") is not None and not isinstance(entry["pred_q_type"], str):
                raise ValueError(f"{where}: introspect[{j}].pred_q_type must be a string, got {entry['pred_q_type']!r}")
            for k, sqa in enumerate(entry["sub_qa"]):
                for field in ("sub_question", "sub_answer"):  # null or missing: an empty pair, skipped by the loader
                    value = sqa.get(field) if isinstance(sqa, dict) else None
                    if value is not None and not isinstance(value, str):
                        raise ValueError(f"{where}: introspect[{j}].sub_qa[{k}].{field} must be a string, got {value!r}")
    if not data:
        raise ValueError(f"{path}: no questions (an empty object)")
    return data


def read_vqa_questions(path: str) -> dict[str, dict]:
    """``question_id (str) -> {"image_id", "question"}`` from ``v2_OpenEnded_mscoco_*_questions.json``."""
    data = load_json_file(path, "VQAv2 questions file")
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise ValueError(f"{path}: not a VQAv2 questions file (expected an object with a 'questions' list)")
    out = {}
    for i, q in enumerate(data["questions"]):
        missing = [k for k in ("image_id", "question", "question_id") if not isinstance(q, dict) or k not in q]
        if missing:
            raise ValueError(f"{path}: questions[{i}] is missing {missing}")
        out[str(q["question_id"])] = {"image_id": int(q["image_id"]), "question": q["question"]}
    return out


def read_vqa_annotations(path: str) -> dict[str, dict]:
    """``question_id (str) -> {"image_id", "multiple_choice_answer", "scores"}`` from ``v2_mscoco_*_annotations.json``."""
    data = load_json_file(path, "VQAv2 annotations file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: not a VQAv2 annotations file (expected an object with an 'annotations' list)")
    out = {}
    for i, a in enumerate(data["annotations"]):
        missing = [k for k in ("question_id", "image_id", "answers") if not isinstance(a, dict) or k not in a]
        if missing:
            raise ValueError(f"{path}: annotations[{i}] is missing {missing}")
        try:
            human = [x["answer"] for x in a["answers"]]
        except (TypeError, KeyError):
            raise ValueError(f"{path}: annotations[{i}] (question {a['question_id']}): 'answers' must be a list of {{'answer': ...}}") from None
        scores = vqa_soft_scores(human)
        mc = a.get("multiple_choice_answer")
        mc = normalize_answer(mc) if mc else (max(scores, key=scores.get) if scores else "")
        out[str(a["question_id"])] = {"image_id": int(a["image_id"]), "multiple_choice_answer": mc, "scores": scores}
    return out


def _as_answer_list(scores: dict[str, float]) -> list[dict]:
    return [{"answer": a, "score": float(s)} for a, s in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


# ----------------------------------------------------------------------------- loader
def _generate_rows(
    introspect_json: str,
    vqa_questions: str | None,
    vqa_annotations: str | None,
    keep_q_types: Sequence[str],
    max_items: int | None,
):
    introspect = read_introspect_json(introspect_json)
    questions = read_vqa_questions(vqa_questions) if vqa_questions else None
    annotations = read_vqa_annotations(vqa_annotations) if vqa_annotations else None
    if questions is not None and not any(qid in questions for qid in introspect):
        raise ValueError(f"{vqa_questions}: shares no question id with {introspect_json}; pass the VQAv2 files of the "
                         "same split (v2_OpenEnded_mscoco_<split>2014_questions.json)")
    if questions is not None and annotations is not None and not any(qid in annotations for qid in questions):
        raise ValueError(f"{vqa_annotations}: shares no question id with {vqa_questions}; pass the annotations of the same split")
    by_image: dict[int, list[str]] = {}
    if questions is not None:
        for qid, q in questions.items():
            by_image.setdefault(q["image_id"], []).append(qid)
        for qids in by_image.values():
            qids.sort(key=lambda x: int(x) if x.isdigit() else x)
    n = 0
    for qid, rec in introspect.items():
        image_id = int(rec["image_id"])
        if questions is not None and qid in questions and questions[qid]["image_id"] != image_id:
            raise ValueError(
                f"{introspect_json}, question id {qid}: image_id {image_id} disagrees with {vqa_questions} "
                f"(image_id {questions[qid]['image_id']})"
            )
        reasoning_q = rec["reasoning_question"]
        most_common = normalize_answer(str(rec["reasoning_answer_most_common"]))
        if annotations is not None and qid in annotations and annotations[qid]["scores"]:
            r_scores = annotations[qid]["scores"]
        else:
            r_scores = {most_common: 1.0}
        # sub-questions: drop invalid entries and empty question/answer, de-duplicate by text
        subs, seen = [], {_normalize_question(reasoning_q)}
        for entry in rec["introspect"]:
            if entry.get("pred_q_type") not in keep_q_types:
                continue
            for sqa in entry["sub_qa"]:
                if not isinstance(sqa, dict):
                    continue
                sq = (sqa.get("sub_question") or "").strip()
                sa = normalize_answer(str(sqa.get("sub_answer") or ""))
                key = _normalize_question(sq)
                if not key or not sa or key in seen:
                    continue
                seen.add(key)
                subs.append((sq, sa))
        irr_ids, irr_q, irr_a, irr_s = [], [], [], []
        if questions is not None:
            for other in by_image.get(image_id, []):
                if other == qid:
                    continue
                text = questions[other]["question"]
                if _normalize_question(text) in seen:
                    continue  # a sub-question asked again in VQAv2 is not irrelevant
                ann = annotations.get(other) if annotations is not None else None
                if ann is None or not ann["scores"]:
                    continue
                irr_ids.append(other)
                irr_q.append(text)
                irr_a.append(ann["multiple_choice_answer"])
                irr_s.append(_as_answer_list(ann["scores"]))
        yield {
            "question_id": str(qid),
            "image_id": image_id,
            "reasoning_question": reasoning_q,
            "reasoning_answer": most_common,
            "reasoning_answers": _as_answer_list(r_scores),
            "sub_questions": [s[0] for s in subs],
            "sub_answers": [s[1] for s in subs],
            "irrelevant_question_ids": irr_ids,
            "irrelevant_questions": irr_q,
            "irrelevant_answers": irr_a,
            "irrelevant_answer_scores": irr_s,
        }
        n += 1
        if max_items is not None and n >= max_items:
            break


def load_vqa_introspect(
    introspect_json: str,
    vqa_questions: str | None = None,
    vqa_annotations: str | None = None,
    *,
    keep_q_types: Sequence[str] = ("reasoning", "perception"),
    drop_without_sub_questions: bool = True,
    max_items: int | None = None,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Load VQA-Introspect (optionally joined with VQAv2) as a ``datasets.Dataset`` (Arrow-cached).

    Args:
        introspect_json: ``VQAIntrospect_{train,val}v1.0.json``.
        vqa_questions / vqa_annotations: the official VQAv2 files of the same split
            (``v2_OpenEnded_mscoco_{split}2014_questions.json``, ``v2_mscoco_{split}2014_annotations.json``).
            Both or neither; without them rows have no irrelevant questions ("only SQ").
        keep_q_types: introspect entries kept by ``pred_q_type`` ("invalid" ones are dropped).
        drop_without_sub_questions: drop reasoning questions left with no valid sub-question.
    """
    if (vqa_questions is None) != (vqa_annotations is None):
        raise ValueError("pass both vqa_questions and vqa_annotations (the official VQAv2 files), or neither")
    paths = [introspect_json] + [p for p in (vqa_questions, vqa_annotations) if p]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"file not found: {p}")
    try:
        ds = _from_generator(paths, introspect_json, vqa_questions, vqa_annotations, keep_q_types, max_items, cache_dir)
    except datasets.exceptions.DatasetGenerationError as e:
        # surface the loader's own error (file, record, what is wrong) rather than the builder's wrapper
        if isinstance(e.__cause__, (ValueError, KeyError, FileNotFoundError)):
            raise e.__cause__ from None
        raise ValueError(f"{introspect_json}: cannot be read as VQA-Introspect: {e.__cause__ or e}") from e
    if drop_without_sub_questions:
        ds = ds.filter(lambda subs: [len(s) > 0 for s in subs], input_columns="sub_questions", batched=True)
    return ds


def _from_generator(paths, introspect_json, vqa_questions, vqa_annotations, keep_q_types, max_items, cache_dir):
    return datasets.Dataset.from_generator(
        _generate_rows,
        features=VQA_INTROSPECT_FEATURES,
        gen_kwargs={
            "introspect_json": os.path.abspath(introspect_json),
            "vqa_questions": os.path.abspath(vqa_questions) if vqa_questions else None,
            "vqa_annotations": os.path.abspath(vqa_annotations) if vqa_annotations else None,
            "keep_q_types": tuple(keep_q_types),
            "max_items": max_items,
        },
        cache_dir=cache_dir,
        # the fingerprint of the files' contents, so an edited file is not served from a stale cache
        fingerprint=_files_fingerprint(paths, keep_q_types, max_items),
    )


def _files_fingerprint(paths, keep_q_types, max_items) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(f"{tuple(keep_q_types)}:{max_items}:v1".encode())
    return h.hexdigest()[:32]


# ------------------------------------------------------------------- vocab and batches
def build_answer_vocab(dataset: datasets.Dataset, min_count: int = 1, max_answers: int | None = None) -> list[str]:
    """Answers of the reasoning, sub- and irrelevant questions, most frequent first (ties alphabetically)."""
    counts: Counter[str] = Counter()
    for row in dataset.select_columns(["reasoning_answer", "sub_answers", "irrelevant_answers"]):
        counts[row["reasoning_answer"]] += 1
        counts.update(row["sub_answers"])
        counts.update(row["irrelevant_answers"])
    counts.pop("", None)
    vocab = [a for a, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
    return vocab[:max_answers] if max_answers else vocab


from ..losses.sort import ROLE_IRRELEVANT, ROLE_REASONING, ROLE_SUB  # noqa: E402


def tokenize_sort_examples(
    dataset: datasets.Dataset,
    tokenizer,
    label2id: dict[str, int],
    max_sub_questions: int | None = None,
    max_irrelevant_questions: int | None = None,
    max_length: int = 24,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Per row: the token ids of [reasoning, sub-questions..., irrelevant questions...], their roles
    (0/1/2) and their answer targets as (label ids, soft scores) over ``label2id``."""

    def _targets(scores: list[dict]) -> tuple[list[int], list[float]]:
        ids, vals = [], []
        for a in scores:
            if a["answer"] in label2id:
                ids.append(label2id[a["answer"]])
                vals.append(float(a["score"]))
        return ids, vals

    def _map(batch):
        out = {"question_input_ids": [], "question_roles": [], "question_label_ids": [], "question_label_scores": []}
        for i in range(len(batch["question_id"])):
            subs = list(zip(batch["sub_questions"][i], batch["sub_answers"][i]))[:max_sub_questions]
            irr = list(zip(batch["irrelevant_questions"][i], batch["irrelevant_answer_scores"][i]))[:max_irrelevant_questions]
            texts = [batch["reasoning_question"][i]] + [s[0] for s in subs] + [q for q, _ in irr]
            roles = [ROLE_REASONING] + [ROLE_SUB] * len(subs) + [ROLE_IRRELEVANT] * len(irr)
            targets = [_targets(batch["reasoning_answers"][i])]
            targets += [_targets([{"answer": a, "score": 1.0}]) for _, a in subs]
            targets += [_targets(s) for _, s in irr]
            enc = tokenizer(texts, truncation=True, max_length=max_length)
            out["question_input_ids"].append(enc["input_ids"])
            out["question_roles"].append(roles)
            out["question_label_ids"].append([t[0] for t in targets])
            out["question_label_scores"].append([t[1] for t in targets])
        return out

    return dataset.map(_map, batched=True, num_proc=num_proc, desc="tokenizing SOrT questions")


class SortCollator:
    """Flattens a batch of <image, reasoning question> rows into one batch of questions.

    Returns ``input_ids``/``attention_mask`` ``[Q, L]`` for every question of every row,
    ``image_features`` ``[B, K, D]`` + ``image_mask`` ``[B, K]`` once per row,
    ``question_image_index`` ``[Q]`` (row of each question), ``question_roles`` ``[Q]``
    (0 reasoning, 1 sub, 2 irrelevant) and soft ``labels`` ``[Q, num_labels]``.
    """

    def __init__(self, features, num_labels: int, pad_token_id: int = 0, image_id_column: str = "image_id"):
        self.features = features  # a RegionFeatureReader (or anything with __getitem__(image_id) -> dict)
        self.num_labels = num_labels
        self.pad_token_id = pad_token_id
        self.image_id_column = image_id_column

    def __call__(self, rows: list[dict]) -> dict:
        import numpy as np
        import torch

        questions, roles, index, label_ids, label_scores = [], [], [], [], []
        feats, boxes = [], []
        for b, row in enumerate(rows):
            item = self.features[row[self.image_id_column]]
            feats.append(np.asarray(item["features"], dtype=np.float32))
            boxes.append(item.get("boxes"))
            questions.extend(row["question_input_ids"])
            roles.extend(row["question_roles"])
            index.extend([b] * len(row["question_input_ids"]))
            label_ids.extend(row["question_label_ids"])
            label_scores.extend(row["question_label_scores"])
        k_max = max(f.shape[0] for f in feats)
        dim = feats[0].shape[1]
        image_features = torch.zeros(len(rows), k_max, dim)
        image_mask = torch.zeros(len(rows), k_max, dtype=torch.long)
        for b, f in enumerate(feats):
            if f.shape[1] != dim:
                raise ValueError(f"image {rows[b][self.image_id_column]}: feature dim {f.shape[1]} != {dim} of the batch")
            image_features[b, : f.shape[0]] = torch.from_numpy(f)
            image_mask[b, : f.shape[0]] = 1
        l_max = max(len(q) for q in questions)
        input_ids = torch.full((len(questions), l_max), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(len(questions), l_max, dtype=torch.long)
        for i, q in enumerate(questions):
            input_ids[i, : len(q)] = torch.tensor(q, dtype=torch.long)
            attention_mask[i, : len(q)] = 1
        labels = torch.zeros(len(questions), self.num_labels)
        for i, (ids, scores) in enumerate(zip(label_ids, label_scores)):
            if ids:
                labels[i, torch.tensor(ids, dtype=torch.long)] = torch.tensor(scores, dtype=torch.float)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "image_features": image_features,
            "image_mask": image_mask,
            "question_image_index": torch.tensor(index, dtype=torch.long),
            "question_roles": torch.tensor(roles, dtype=torch.long),
            "labels": labels,
        }
        if all(bx is not None for bx in boxes):
            image_boxes = torch.zeros(len(rows), k_max, 4)
            for b, bx in enumerate(boxes):
                image_boxes[b, : len(bx)] = torch.as_tensor(np.asarray(bx, dtype=np.float32))
            batch["image_boxes"] = image_boxes
        return batch
