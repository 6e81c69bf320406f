"""Test-wide settings: offline, small thread pools, isolated caches, shared fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Runs never reach the Hub; tests/hub serves a local Hub and overrides this itself.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real published samples (VCR, NExT-QA, MSVD-QA, MSRVTT-QA, VQA-Introspect) live outside the repository:
# HF_VCR_REAL_DATA names their folder (default: shared/data beside the checkout; README: "Real-data samples").
REAL_DATA_ENV = "HF_VCR_REAL_DATA"
SHARED_DATA = Path(os.environ.get(REAL_DATA_ENV) or REPO_ROOT.parent / "shared" / "data").resolve()


def require_real_data() -> Path:
    """The real-data folder; skipped when it is absent, unless HF_VCR_REAL_DATA is set (CI): then a failure."""
    if not SHARED_DATA.is_dir():
        message = f"real data samples not found in {SHARED_DATA} (set {REAL_DATA_ENV}; README: Real-data samples)"
        if os.environ.get(REAL_DATA_ENV):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return SHARED_DATA


def pytest_configure(config):
    config.addinivalue_line("markers", "real_data: needs the real published samples (HF_VCR_REAL_DATA)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("real_data"):
        require_real_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_real_data()


@pytest.fixture(scope="session", autouse=True)
def _isolated_datasets_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf_datasets_cache")
    old = os.environ.get("HF_DATASETS_CACHE")
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    yield
    if old is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = old


@pytest.fixture(scope="session")
def real_vcr_dir(shared_data, tmp_path_factory) -> Path:
    """The real VCR samples laid out as ``{split}.jsonl`` (val-1 has its image + metadata)."""
    d = tmp_path_factory.mktemp("real_vcr")
    shutil.copy(shared_data / "vcr" / "val_sample_from_VLE_README.jsonl", d / "val.jsonl")
    shutil.copy(shared_data / "vcr" / "train_sample_from_r2c_comment.jsonl", d / "train.jsonl")
    return d


def small_vcr_corpus(directory, n_train: int, n_val: int, extra_words: str = ""):
    """An embedded VCR corpus in ``directory``, loaded: ``(paths, train, val, word tokenizer over its words)``."""
    from hf_vcr.data.synthetic_vcr import write_vcr_corpus
    from hf_vcr.data.tokenization import build_word_tokenizer
    from hf_vcr.data.vcr import load_vcr
    from hf_vcr.trainers.vcr_components import corpus_words

    paths = write_vcr_corpus(str(directory), n_train=n_train, n_val=n_val)
    train = load_vcr("train", paths["annotations_dir"], paths["images_dir"])
    val = load_vcr("val", paths["annotations_dir"], paths["images_dir"])
    words = " ".join(corpus_words(train)) + " " + " ".join(corpus_words(val)) + extra_words
    return paths, train, val, build_word_tokenizer([words])


@pytest.fixture(scope="session")
def synthetic_vcr(tmp_path_factory) -> dict:
    """A small embedded VCR corpus (official layout)."""
    from hf_vcr.data.synthetic_vcr import write_vcr_corpus

    return write_vcr_corpus(str(tmp_path_factory.mktemp("synthetic_vcr")), n_train=160, n_val=48, seed=0)
