"""``hf-vcr filter-corpus``: score an LSKD corpus with a trained critic and keep the lines above a threshold.

    hf-vcr filter-corpus --critic DIR --input corpus.jsonl --threshold 0.8 --output kept.jsonl [--images-dir ROOT]

Streaming: the input is read line by line in batches (a progress bar follows the bytes read), so a
corpus of millions of lines never sits in memory. Each kept line is the original JSON object with the
critic's score written into ``prediction``. Every input line ends up in exactly one place:

* ``OUTPUT`` (kept, score >= threshold),
* ``OUTPUT.report.jsonl`` as ``{"line": n, "status": "dropped", "score": s}`` or
  ``{"line": n, "status": "malformed", "error": "..."}``.

Resumable: after each batch the outputs are flushed to disk and ``OUTPUT.progress.json`` records
the input byte offset, the line number and the byte sizes of both outputs (written atomically).
A run that is killed restarts from that record and first truncates the outputs to the recorded
sizes, so nothing is duplicated or skipped. The run ends with a count summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

import torch

from ..utils.checkpoints import atomic_write_json
from ..utils.run_guard import acquire_lock
from .lskd import LskdFormatError, load_lskd_object, lskd_text, parse_lskd_item, read_region_file, record_regions, record_tokens
from .regions import localize


def _progress_path(output: str) -> str:
    return output + ".progress.json"


def _report_path(output: str) -> str:
    return output + ".report.jsonl"


def _has_content(path: str) -> bool:
    """Whether ``path`` has a non-blank line (reads only up to the first one)."""
    with open(path, "rb") as f:
        return any(raw.strip() for raw in f)


def _input_signature(path: str) -> dict:
    st = os.stat(path)
    with open(path, "rb") as f:
        head = f.read(65536)
    import hashlib

    return {"input": os.path.abspath(path), "input_size": st.st_size, "input_head_sha256": hashlib.sha256(head).hexdigest()}


class CriticScorer:
    """Loads a saved critic (+ its tokenizer and image processor) and scores records: P(accept)."""

    def __init__(self, critic_dir: str, images_dir: str | None, with_rationale: bool = True, max_length: int = 128, device: str | None = None):
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        import hf_vcr  # noqa: F401  (registers the critic with AutoModel)

        self.model = AutoModel.from_pretrained(critic_dir).eval()
        if not hasattr(self.model, "accept_probability"):
            raise ValueError(f"{critic_dir}: not an LSKD critic (got {type(self.model).__name__})")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(critic_dir)
        self.image_processor = AutoImageProcessor.from_pretrained(critic_dir)
        self.images_dir = images_dir
        self.with_rationale = with_rationale
        self.max_length = max_length

    def prepare(self, rec: dict, where: str):
        """(image with regions drawn, text); raises LskdFormatError for a missing or unreadable image."""
        from PIL import Image, UnidentifiedImageError

        root = os.path.realpath(self.images_dir or ".")
        path = os.path.realpath(os.path.join(root, rec["image"]))
        if os.path.commonpath([root, path]) != root:
            raise LskdFormatError(f"{where}: image path {rec['image']!r} escapes the images root {root}")
        try:
            image = Image.open(path).convert("RGB")
        except FileNotFoundError:
            raise LskdFormatError(f"{where}: image file not found: {path}") from None
        except (UnidentifiedImageError, OSError) as e:
            raise LskdFormatError(f"{where}: cannot read image {path}: {e}") from None
        fields = ["question", "answer"] + (["rationale"] if self.with_rationale and rec["rationale_words"] else [])
        drawn, texts, _ = localize(image, record_regions(rec), [record_tokens(rec, f) for f in fields], mentioned=rec["region"])
        return drawn, lskd_text(*texts)

    @torch.no_grad()
    def score(self, prepared: list) -> list[float]:
        images, texts = zip(*prepared)
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        pv = self.image_processor(list(images), return_tensors="pt")["pixel_values"].to(self.device)
        p = self.model.accept_probability(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device), pixel_values=pv)
        return [float(x) for x in p.cpu()]


def filter_corpus(
    critic: str | CriticScorer,
    input_path: str,
    output_path: str,
    threshold: float = 0.8,
    images_dir: str | None = None,
    region_file: str | None = None,
    batch_size: int = 32,
    with_rationale: bool = True,
    restart: bool = False,
    throttle: float = 0.0,
    progress_bar: bool = True,
) -> dict:
    """Filter ``input_path`` into ``output_path`` (resuming a previous run); returns the count summary."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not os.path.isfile(input_path):
        raise FileNotFoundError(f"input corpus not found: {input_path}")
    if not _has_content(input_path):
        raise ValueError(f"{input_path}: the input corpus is empty (no non-blank line): nothing to filter")
    progress_file, report_file = _progress_path(output_path), _report_path(output_path)
    # one run per output: a second concurrent run refuses (the OS drops the lock of a killed run)
    acquire_lock(output_path + ".lock", output_path, "hf-vcr filter-corpus run")
    signature = _input_signature(input_path)
    state = {**signature, "threshold": threshold, "offset": 0, "line": 0, "output_bytes": 0, "report_bytes": 0,
             "kept": 0, "dropped": 0, "malformed": 0, "malformed_lines": [], "done": False}
    if os.path.isfile(progress_file) and not restart:
        with open(progress_file, encoding="utf-8") as f:
            saved = json.load(f)
        if any(saved.get(k) != v for k, v in signature.items()) or saved.get("threshold") != threshold:
            raise ValueError(
                f"{progress_file} belongs to another run (input {saved.get('input')}, threshold {saved.get('threshold')}); "
                "pass --restart to start over"
            )
        state = saved
    elif not restart and os.path.exists(output_path) and os.path.getsize(output_path) > 0:
        raise ValueError(f"{output_path} exists but has no progress record {progress_file}; pass --restart to overwrite it")
    if state["done"]:
        return _summary(state, output_path)

    scorer = critic if isinstance(critic, CriticScorer) else CriticScorer(critic, images_dir, with_rationale)
    region_index = read_region_file(region_file) if region_file else None

    # bring the outputs back to the last recorded state (drops what a killed run wrote after it)
    for path, size in ((output_path, state["output_bytes"]), (report_file, state["report_bytes"])):
        with open(path, "a+b") as f:
            f.truncate(size)
    out = open(output_path, "ab")
    rep = open(report_file, "ab")
    fin = open(input_path, "rb")
    fin.seek(state["offset"])
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=signature["input_size"], initial=state["offset"], unit="B", unit_scale=True, desc="filter-corpus", file=sys.stderr)
    try:
        while True:
            batch = []  # (line_no, raw bytes)
            while len(batch) < batch_size:
                raw = fin.readline()
                if not raw:
                    break
                batch.append((state["line"] + len(batch) + 1, raw))
            if not batch:
                break
            consumed = sum(len(raw) for _, raw in batch)
            kept_lines, report_lines = [], []
            ready, objs = [], []
            for line_no, raw in batch:
                where = f"{input_path}, line {line_no}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    report_lines.append({"line": line_no, "status": "malformed", "error": f"{where}: not UTF-8"})
                    continue
                if not text.strip():
                    report_lines.append({"line": line_no, "status": "malformed", "error": f"{where}: empty line"})
                    continue
                try:
                    obj = load_lskd_object(text, input_path, line_no)  # parsed once: validated, then written back
                    rec = parse_lskd_item(obj, input_path, line_no, region_index, require_rationale=with_rationale)
                    ready.append((line_no, scorer.prepare(rec, where)))
                    objs.append(obj)
                except LskdFormatError as e:
                    report_lines.append({"line": line_no, "status": "malformed", "error": str(e)})
            scores = scorer.score([p for _, p in ready]) if ready else []
            for (line_no, _), obj, score in zip(ready, objs, scores):
                if score >= threshold:
                    obj["prediction"] = round(score, 6)
                    kept_lines.append(json.dumps(obj, ensure_ascii=False))
                else:
                    report_lines.append({"line": line_no, "status": "dropped", "score": round(score, 6)})
            report_lines.sort(key=lambda r: r["line"])
            if kept_lines:
                out.write(("\n".join(kept_lines) + "\n").encode("utf-8"))
            if report_lines:
                rep.write("".join(json.dumps(r) + "\n" for r in report_lines).encode("utf-8"))
            for f in (out, rep):
                f.flush()
                os.fsync(f.fileno())
            state["offset"] += consumed
            state["line"] += len(batch)
            state["output_bytes"], state["report_bytes"] = out.tell(), rep.tell()
            state["kept"] += len(kept_lines)
            for r in report_lines:
                state[r["status"]] += 1
                if r["status"] == "malformed" and len(state["malformed_lines"]) < 1000:
                    state["malformed_lines"].append(r["line"])
            atomic_write_json(progress_file, state)
            if bar is not None:
                bar.update(consumed)
            if throttle:
                time.sleep(throttle)
        state["done"] = True
        atomic_write_json(progress_file, state)
    finally:
        fin.close()
        out.close()
        rep.close()
        if bar is not None:
            bar.close()
    return _summary(state, output_path)


def _summary(state: dict, output_path: str) -> dict:
    return {
        "lines": state["line"],
        "kept": state["kept"],
        "dropped": state["dropped"],
        "malformed": state["malformed"],
        "malformed_lines": state["malformed_lines"],
        "output": output_path,
        "report": _report_path(output_path),
        "threshold": state["threshold"],
    }


def filter_corpus_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="hf-vcr filter-corpus", description="Keep the corpus lines a trained LSKD critic accepts.")
    parser.add_argument("--critic", required=True, help="saved critic directory (model, tokenizer, image processor)")
    parser.add_argument("--input", required=True, help="LSKD corpus jsonl")
    parser.add_argument("--output", required=True, help="kept lines (jsonl, with the critic score in 'prediction')")
    parser.add_argument("--threshold", type=float, default=0.8, help="keep lines with P(accept) >= threshold (paper: 0.8)")
    parser.add_argument("--images-dir", default=None, help="root of the corpus 'image' paths (default: the input's folder)")
    parser.add_argument("--region-file", default=None, help="separate region file (image -> region_locations)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-rationale", action="store_true", help="score 'Q Answer: A' instead of 'Q Answer: A Rationale: R'")
    parser.add_argument("--restart", action="store_true", help="ignore a previous run's progress and overwrite the outputs")
    parser.add_argument("--throttle", type=float, default=0.0, help="seconds to sleep between batches (share a busy machine)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    images_dir = args.images_dir or os.path.dirname(os.path.abspath(args.input))
    summary = filter_corpus(
        args.critic, args.input, args.output, args.threshold, images_dir, args.region_file, args.batch_size,
        with_rationale=not args.no_rationale, restart=args.restart, throttle=args.throttle, progress_bar=not args.no_progress,
    )
    shown = summary["malformed_lines"][:20]
    more = "" if len(summary["malformed_lines"]) <= 20 else f" (+{summary['malformed'] - 20} more)"
    print(
        f"filter-corpus: {summary['lines']} lines: kept {summary['kept']}, dropped {summary['dropped']} (scores < {summary['threshold']}), "
        f"malformed {summary['malformed']}" + (f" at lines {shown}{more}" if shown else "")
        + f"; details in {summary['report']}",
        file=sys.stderr,
    )
    print(json.dumps(summary))
    return 0
