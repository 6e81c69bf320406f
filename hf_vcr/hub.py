"""Sharing checkpoints and converted datasets on the Hugging Face Hub.

* :func:`push_checkpoint` uploads a saved model directory (``save_pretrained`` output plus its ``README.md`` model
  card, see :mod:`hf_vcr.model_card`) with ``HfApi.create_repo(exist_ok=True)`` + ``HfApi.upload_folder``.
* :func:`push_dataset` pushes one or several configurations (one per task view: ``q2a``, ``qa2r``, ``qr2a``,
  ``joint`` ...) as Parquet through ``Dataset.push_to_hub(repo_id, config_name=...)``, then writes a dataset card
  rendered from ``model_cards/dataset_card.md.j2`` through ``huggingface_hub.DatasetCard``.

Both only *read* local files.  Whatever fails (repository creation, README validation, pre-upload, LFS transfer,
commit, ...), they raise :class:`HubPushError` naming the step, the repository, and the endpoint with its HTTP
status, and the local directory is left exactly as it was.

Everything goes through ``huggingface_hub``, so the usual environment applies: ``HF_TOKEN`` (or ``token=``),
``HF_ENDPOINT`` for a private Hub / mirror, ``HF_HUB_OFFLINE=1`` refuses every upload.
"""

from __future__ import annotations

import os
from importlib import resources
import re
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from huggingface_hub import DatasetCard, DatasetCardData, HfApi
from huggingface_hub.errors import OfflineModeIsEnabled

# The templates ship as the package data of hf_vcr.model_cards (the top-level model_cards/ folder).
_REPO_TEMPLATES = str(resources.files("hf_vcr.model_cards"))
DATASET_CARD_TEMPLATE = "dataset_card.md.j2"
# temporary files of interrupted atomic writes, locks, caches, intermediate Trainer checkpoints, and pickles: a
# ``training_args.bin`` is a pickle (unsafe to load, and it holds ``hub_token`` in clear); hf_vcr's trainers write
# ``training_args.json`` (secrets redacted) instead, which is pushed
PICKLE_PATTERNS = ("*training_args.bin", "*.pkl", "*.pickle")
DEFAULT_IGNORE_PATTERNS = (".tmp-*", "*/.tmp-*", "*.lock", ".cache/*", "checkpoint-*") + PICKLE_PATTERNS
_CONFIG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

__all__ = [
    "HubPushError", "push_checkpoint", "push_trained_model", "run_repo_id", "push_dataset", "render_dataset_card", "DATASET_CARD_TEMPLATE",
    "push_checkpoint_cli", "push_dataset_cli",
]


class HubPushError(RuntimeError):
    """A push to the Hub failed.  The local files were not touched.

    Attributes:
        step: which step failed (``check_local``, ``create_repo``, ``validate_yaml``, ``preupload``, ``lfs_batch``,
            ``lfs_upload``, ``lfs_verify``, ``commit``, ``push_config:<name>``, ``read_card``, ``dataset_card``, ...).
        repo_id, repo_type: the target repository.
        status_code: the HTTP status the Hub answered (None for a connection / local error).
        url: the endpoint that answered (None if unknown).
    """

    def __init__(self, message: str, *, step: str, repo_id: str, repo_type: str = "model",
                 status_code: int | None = None, url: str | None = None):
        super().__init__(message)
        self.step = step
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.status_code = status_code
        self.url = url


# --------------------------------------------------------------------------- error classification
def _step_from_url(method: str | None, url: str | None) -> str | None:
    if not url:
        return None
    path = urlsplit(url).path
    if path.endswith("/api/repos/create"):
        return "create_repo"
    if path.endswith("/api/validate-yaml"):
        return "validate_yaml"
    if "/preupload/" in path:
        return "preupload"
    if "/info/lfs/objects/batch" in path:
        return "lfs_batch"
    if "/commit/" in path and (method or "POST") == "POST":
        return "commit"
    if "verify" in path and "lfs" in path:
        return "lfs_verify"
    if method == "PUT":
        return "lfs_upload"
    if "/resolve/" in path:
        return "download"
    if "/paths-info/" in path or "/tree/" in path or re.search(r"/api/(models|datasets|spaces)/[^/]+/[^/]+/?$", path):
        return "repo_info"
    return None


def _http_details(exc: BaseException) -> tuple[str | None, int | None, str | None, str]:
    """(method, status, url, server message) of the first HTTP error / request found in the exception chain."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        response = getattr(cur, "response", None)
        if response is not None and getattr(response, "status_code", None) is not None:
            request = getattr(response, "request", None)
            method = getattr(request, "method", None) if request is not None else None
            url = str(request.url) if request is not None and getattr(request, "url", None) else None
            server_msg = getattr(cur, "server_message", None) or ""
            if not server_msg:
                try:
                    server_msg = response.headers.get("X-Error-Message") or response.text[:300]
                except Exception:  # streamed / closed body
                    server_msg = ""
            return method, int(response.status_code), url, server_msg
        try:
            request = getattr(cur, "request", None)  # httpx transport errors carry the request
        except RuntimeError:
            request = None
        if request is not None and getattr(request, "url", None) is not None:
            return getattr(request, "method", None), None, str(request.url), ""
        cur = cur.__cause__ or cur.__context__
    return None, None, None, ""


def _wrap(exc: BaseException, *, step: str, repo_id: str, repo_type: str, what: str) -> HubPushError:
    method, status, url, server_msg = _http_details(exc)
    inner = _step_from_url(method, url)
    if isinstance(exc, OfflineModeIsEnabled):
        detail = "HF_HUB_OFFLINE is set: uploads are disabled (unset it to push)"
    else:
        detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    full_step = step if inner is None or inner == step else f"{step}/{inner}"
    where = f" at {method or 'request'} {url}" if url else ""
    status_txt = f" -> HTTP {status}" if status is not None else ""
    msg = (
        f"Pushing {what} to the Hub {repo_type} repository '{repo_id}' failed at step '{full_step}'"
        f"{where}{status_txt}. {detail}"
    )
    if server_msg and server_msg not in msg:
        msg += f" (server said: {server_msg.strip()})"
    return HubPushError(msg, step=full_step, repo_id=repo_id, repo_type=repo_type, status_code=status, url=url)


# --------------------------------------------------------------------------- checkpoints
def push_checkpoint(
    local_dir: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str = "Upload checkpoint with hf_vcr",
    commit_description: str | None = None,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    require_model_card: bool = True,
    ignore_patterns: Iterable[str] | None = None,
    endpoint: str | None = None,
):
    """Upload a saved model directory to the model repository ``repo_id`` (created if needed).

    ``local_dir`` is a ``save_pretrained`` directory: it must hold ``config.json`` and, unless
    ``require_model_card=False``, the ``README.md`` model card written by :func:`hf_vcr.model_card.write_model_card`.
    No pickle is ever uploaded (``training_args.bin``, ``*.pkl``): hf_vcr's trainers save ``training_args.json``.
    Temporary files of interrupted atomic writes (``.tmp-*``), locks, ``.cache/`` and intermediate Trainer
    ``checkpoint-*`` folders are not uploaded (pass ``ignore_patterns`` to change this).  Returns the ``CommitInfo``
    (``.oid``, ``.commit_url``).

    Raises:
        HubPushError: naming the failed step (``check_local``, ``create_repo``, ``upload/<endpoint>``), the
            repository and the endpoint's HTTP status.  ``local_dir`` is never modified or deleted.
    """
    local_dir = os.fspath(local_dir)
    what = f"checkpoint '{local_dir}'"
    if not os.path.isdir(local_dir):
        raise HubPushError(f"Cannot push {what}: it is not a directory.", step="check_local", repo_id=repo_id)
    if not os.path.isfile(os.path.join(local_dir, "config.json")):
        raise HubPushError(
            f"Cannot push {what} to '{repo_id}': it has no config.json, so it is not a saved model directory "
            "(write it with model.save_pretrained(dir)).", step="check_local", repo_id=repo_id)
    if require_model_card and not os.path.isfile(os.path.join(local_dir, "README.md")):
        raise HubPushError(
            f"Cannot push {what} to '{repo_id}': it has no README.md model card (write one with "
            "hf_vcr.model_card.write_model_card(dir, ...), or pass require_model_card=False).",
            step="check_local", repo_id=repo_id)

    api = HfApi(endpoint=endpoint, token=token, library_name="hf_vcr")
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        raise _wrap(exc, step="create_repo", repo_id=repo_id, repo_type="model", what=what) from exc
    try:
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=local_dir,
            commit_message=commit_message,
            commit_description=commit_description,
            revision=revision,
            # never a pickle, whatever the caller's patterns
            ignore_patterns=list(ignore_patterns if ignore_patterns is not None else DEFAULT_IGNORE_PATTERNS) + list(PICKLE_PATTERNS),
        )
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, step="upload", repo_id=repo_id, repo_type="model", what=what) from exc


def run_repo_id(args, sub_model: str | None = None) -> str:
    """The Hub repository of a training run: ``hub_model_id`` (else the output directory's name), with
    ``-<sub_model>`` appended for one of several models of a run (ARC's ``f_a``, ``f_r``, ``f_c``)."""
    repo = args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
    return f"{repo}-{sub_model.lower()}" if sub_model else repo


def push_trained_model(args, local_dir: str | os.PathLike, sub_model: str | None = None, commit_message: str | None = None):
    """Push a run's saved model (with its card) to :func:`run_repo_id`, using the run's ``TrainingArguments``
    (``hub_token``, ``hub_private_repo``, ``hub_revision``). Raises :class:`HubPushError` on failure."""
    return push_checkpoint(
        local_dir,
        run_repo_id(args, sub_model),
        commit_message=commit_message or "Upload checkpoint with hf_vcr",
        token=args.hub_token,
        private=bool(args.hub_private_repo),
        revision=getattr(args, "hub_revision", None),
    )


# --------------------------------------------------------------------------- datasets
def _normalise_configs(data, config_name: str, split: str | None) -> dict[str, Any]:
    from datasets import Dataset, DatasetDict

    if isinstance(data, (Dataset, DatasetDict)):
        configs = {config_name: data}
    elif isinstance(data, Mapping):
        configs = dict(data)
    else:
        raise TypeError(
            "push_dataset expects a datasets.Dataset, a datasets.DatasetDict, or a mapping "
            f"{{config_name: Dataset | DatasetDict}}; got {type(data).__name__}")
    if not configs:
        raise ValueError("push_dataset got no configuration to push")
    out = {}
    for name, ds in configs.items():
        if not isinstance(name, str) or not _CONFIG_NAME_RE.match(name):
            raise ValueError(f"invalid config name {name!r}: use letters, digits, '_', '-' or '.'")
        if isinstance(ds, Dataset):
            ds = DatasetDict({split or (str(ds.split) if ds.split is not None else "train"): ds})
        elif not isinstance(ds, DatasetDict):
            raise TypeError(f"config {name!r}: expected a Dataset or DatasetDict, got {type(ds).__name__}")
        if len(ds) == 0:
            raise ValueError(f"config {name!r} has no split")
        out[name] = ds
    return out


def _feature_type(feat) -> str:
    kind = type(feat).__name__
    if kind == "ClassLabel":
        names = list(feat.names)
        return f"class label ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
    if kind == "Value":
        return str(feat.dtype)
    if isinstance(feat, dict):
        return "struct{" + ", ".join(f"{k}: {_feature_type(v)}" for k, v in feat.items()) + "}"
    if isinstance(feat, (list, tuple)) and len(feat) == 1:
        return f"list<{_feature_type(feat[0])}>"
    inner = getattr(feat, "feature", None)
    if inner is not None:  # List / LargeList / Sequence
        length = getattr(feat, "length", -1)
        return f"list<{_feature_type(inner)}>" + (f"[{length}]" if isinstance(length, int) and length > 0 else "")
    return kind


def _feature_summary(features) -> list[tuple[str, str]]:
    return [(name, _feature_type(feat)) for name, feat in features.items()]


def render_dataset_card(
    repo_id: str,
    configs: Mapping[str, Any],
    *,
    existing: DatasetCardData | None = None,
    pretty_name: str | None = None,
    description: str | None = None,
    source: str | None = None,
    source_url: str | None = None,
    license: str | None = None,
    citation: str | None = None,
    tags: list[str] | None = None,
    task_categories: list[str] | None = None,
    language: list[str] | None = None,
    default_config: str | None = None,
    template: str = DATASET_CARD_TEMPLATE,
) -> DatasetCard:
    """The dataset card: YAML from ``existing`` (``configs`` / ``dataset_info`` written by ``push_to_hub``, which
    ``load_dataset`` relies on) plus license / pretty name / tags, and the body from the Jinja template."""
    data = existing.to_dict() if existing is not None else {}
    if license is not None:
        data["license"] = license
    if pretty_name is not None:
        data["pretty_name"] = pretty_name
    data["tags"] = sorted(set(list(data.get("tags") or []) + ["hf_vcr"] + list(tags or [])))
    if task_categories is not None:
        data["task_categories"] = list(task_categories)
    if language is not None:
        data["language"] = list(language)
    if source is not None and "source_datasets" not in data:
        data["source_datasets"] = [source]
    card_data = DatasetCardData(**{k: v for k, v in data.items() if v is not None})

    config_rows = []
    for name, dsd in configs.items():
        first = next(iter(dsd.values()))
        config_rows.append({
            "name": name,
            "splits": {split: ds.num_rows for split, ds in dsd.items()},
            "features": _feature_summary(first.features),
        })
    path = os.path.join(_REPO_TEMPLATES, template)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset card template not found: {path}")
    return DatasetCard.from_template(
        card_data,
        template_path=path,
        repo_id=repo_id,
        pretty_name=pretty_name or data.get("pretty_name") or repo_id.split("/")[-1],
        description=description,
        source=source,
        source_url=source_url,
        license=data.get("license"),
        citation=citation,
        configs=config_rows,
        default_config=default_config or config_rows[0]["name"],
    )


def push_dataset(
    dataset_or_dict_of_configs,
    repo_id: str,
    *,
    config_name: str = "default",
    split: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    max_shard_size: str | int | None = None,
    default_config: str | None = None,
    endpoint: str | None = None,
    **card_kwargs,
):
    """Push a dataset to the dataset repository ``repo_id`` as Parquet, one configuration per task, with a card.

    ``dataset_or_dict_of_configs`` is a ``Dataset`` / ``DatasetDict`` (pushed as ``config_name``, a ``Dataset`` as
    ``split`` or its own split or ``train``) or ``{config_name: Dataset | DatasetDict}`` (e.g.
    ``{"q2a": ..., "qa2r": ..., "qr2a": ..., "joint": ...}``).  Each configuration goes through
    ``DatasetDict.push_to_hub(repo_id, config_name=name)`` (Parquet shards under ``<name>/``, ``configs`` in the
    README YAML), then the README is rewritten as a dataset card from ``model_cards/dataset_card.md.j2`` keeping that
    YAML; ``card_kwargs`` go to :func:`render_dataset_card` (``pretty_name``, ``description``, ``source``,
    ``source_url``, ``license``, ``citation``, ``tags``, ``task_categories``, ``language``).

    Load it back with ``datasets.load_dataset(repo_id, name)``; ``default_config`` (the only configuration when
    there is one) is also what ``load_dataset(repo_id)`` loads.  Returns the card's ``CommitInfo``.

    Raises:
        HubPushError: naming the step (``create_repo``, ``push_config:<name>/<endpoint>``, ``read_card``,
            ``dataset_card/<endpoint>``), the repository and the HTTP status.  Nothing local is modified.
    """
    import datasets.config

    allowed = {"pretty_name", "description", "source", "source_url", "license", "citation", "tags",
               "task_categories", "language"}
    unknown = set(card_kwargs) - allowed
    if unknown:
        raise TypeError(f"push_dataset got unknown card argument(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    configs = _normalise_configs(dataset_or_dict_of_configs, config_name, split)
    what = f"dataset ({', '.join(configs)})"
    if default_config is None and len(configs) == 1:
        default_config = next(iter(configs))
    if default_config is not None and default_config not in configs:
        raise ValueError(f"default_config {default_config!r} is not one of the configs {sorted(configs)}")
    api = HfApi(endpoint=endpoint or datasets.config.HF_ENDPOINT, token=token, library_name="hf_vcr")

    try:
        repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, step="create_repo", repo_id=repo_id, repo_type="dataset", what=what) from exc

    for name, dsd in configs.items():
        try:
            dsd.push_to_hub(
                repo_id,
                config_name=name,
                set_default=True if name == default_config else None,
                private=private,
                token=token,
                commit_message=commit_message or f"Upload config '{name}' with hf_vcr",
                max_shard_size=max_shard_size,
            )
        except Exception as exc:  # noqa: BLE001
            raise _wrap(exc, step=f"push_config:{name}", repo_id=repo_id, repo_type="dataset", what=what) from exc

    try:
        readme = api.hf_hub_download(repo_id, "README.md", repo_type="dataset")
        with open(readme, encoding="utf-8") as f:
            existing = DatasetCard(f.read()).data
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, step="read_card", repo_id=repo_id, repo_type="dataset", what=what) from exc

    card = render_dataset_card(repo_id, configs, existing=existing, default_config=default_config, **card_kwargs)
    try:
        return api.upload_file(
            path_or_fileobj=str(card).encode("utf-8"),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="dataset",
            commit_message="Add dataset card (hf_vcr)",
        )
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, step="dataset_card", repo_id=repo_id, repo_type="dataset", what=what) from exc


# --------------------------------------------------------------------------- command line
def _load_local_dataset(path: str):
    import datasets

    if os.path.isdir(path):
        return datasets.load_from_disk(path)
    lower = path.lower()
    if lower.endswith(".parquet"):
        return datasets.Dataset.from_parquet(path)
    if lower.endswith((".jsonl", ".json")):
        return datasets.Dataset.from_json(path)
    if lower.endswith(".csv"):
        return datasets.Dataset.from_csv(path)
    raise ValueError(f"{path}: expected a save_to_disk directory or a .parquet/.jsonl/.json/.csv file")


def push_checkpoint_cli(argv: list[str]) -> int:
    """``hf-vcr push LOCAL_DIR REPO_ID [--private] [--message MSG] [--no-card-check]``"""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="hf-vcr push", description="Upload a saved model directory to the Hub.")
    parser.add_argument("local_dir")
    parser.add_argument("repo_id")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--message", default="Upload checkpoint with hf_vcr")
    parser.add_argument("--no-card-check", action="store_true", help="allow a directory without README.md")
    args = parser.parse_args(argv)
    try:
        info = push_checkpoint(args.local_dir, args.repo_id, commit_message=args.message, private=args.private,
                               require_model_card=not args.no_card_check)
    except HubPushError as err:
        sys.stderr.write(f"hf-vcr push: {err}\n")
        return 1
    print(info.commit_url)
    return 0


def push_dataset_cli(argv: list[str]) -> int:
    """``hf-vcr push-dataset REPO_ID --config NAME=PATH [--config NAME=PATH ...] [--license L] [--source S] ...``

    PATH is a ``save_to_disk`` directory (Dataset or DatasetDict) or a .parquet/.jsonl/.json/.csv file."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="hf-vcr push-dataset",
                                     description="Push converted datasets to the Hub, one config per task.")
    parser.add_argument("repo_id")
    parser.add_argument("--config", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--default-config")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--license")
    parser.add_argument("--source")
    parser.add_argument("--source-url")
    parser.add_argument("--pretty-name")
    parser.add_argument("--description")
    args = parser.parse_args(argv)
    configs = {}
    for item in args.config:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--config expects NAME=PATH, got {item!r}")
        try:
            configs[name] = _load_local_dataset(path)
        except (OSError, ValueError) as err:
            sys.stderr.write(f"hf-vcr push-dataset: cannot read config {name!r} from {path}: {err}\n")
            return 2
    card = {k: v for k, v in dict(license=args.license, source=args.source, source_url=args.source_url,
                                  pretty_name=args.pretty_name, description=args.description).items() if v}
    try:
        info = push_dataset(configs, args.repo_id, private=args.private, default_config=args.default_config, **card)
    except HubPushError as err:
        sys.stderr.write(f"hf-vcr push-dataset: {err}\n")
        return 1
    print(info.commit_url)
    return 0
