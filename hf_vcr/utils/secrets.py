"""One place that decides what is a secret and hides it: the card writer (:func:`redact_argv`), the saved
training arguments (:func:`redact_mapping`), log records and logged values (:func:`scrub`,
:func:`install_log_redaction`) all go through it.

A *secret name* is an argument or variable name with a word ``token``, ``key``, ``secret``, ``password``
(``--hub_token``, ``HF_TOKEN``, ``wandb_api_key``, ``AWS_SECRET_ACCESS_KEY``), unless its last word says it
is not a credential (``pad_token_id``, ``token_type_ids``, ``max_tokens`` are not). A *secret value* is the
value of such a variable in the environment, any value registered with :func:`register_secret` (the
trainer registers ``hub_token``), or a string shaped like a Hugging Face token (``hf_`` + 30 or more
characters). :func:`scrub` replaces secret values anywhere in a text, so a token passed under an
innocent name is hidden too once it is known.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterable, Mapping, Sequence

REDACTED = "<redacted>"
_SECRET_WORDS = {"token", "key", "secret", "password", "passwd", "apikey", "credential", "credentials"}
_SECRET_INFIXES = ("secret", "password", "passwd", "apikey")
# a name ending with one of these words names an id, a count or a shape, not a credential
_NOT_SECRET_LAST = {"id", "ids", "type", "types", "length", "len", "size", "count", "num", "index", "dim", "limit",
                    "name", "path", "file", "dir", "column", "field"}
_HF_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")
_MIN_SECRET_LEN = 6  # shorter environment values ("1", "true") are not replaced in text
_registered: set[str] = set()


def is_secret_name(name: str) -> bool:
    """Whether an argument or variable called ``name`` holds a credential (see the module doc)."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower().lstrip("-")) if w]
    if not words or words[-1] in _NOT_SECRET_LAST:
        return False
    return any(w in _SECRET_WORDS for w in words) or any(s in name.lower() for s in _SECRET_INFIXES)


def register_secret(value: Any) -> None:
    """Hide ``value`` wherever :func:`scrub` runs from now on (a token passed in memory, not by environment)."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LEN and value != REDACTED:
        _registered.add(value)


def secret_values(extra: Iterable[str] = ()) -> list[str]:
    """Every known secret value, longest first (so a token is replaced before any of its substrings)."""
    values = set(_registered)
    values.update(v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN)
    values.update(v for v in extra if isinstance(v, str) and len(v) >= _MIN_SECRET_LEN)
    return sorted(values, key=len, reverse=True)


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and every ``hf_...`` token replaced by ``<redacted>``."""
    for value in secret_values(extra):
        if value in text:
            text = text.replace(value, REDACTED)
    return _HF_TOKEN_RE.sub(REDACTED, text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the value of every secret option (``--hub_token X`` / ``--hub_token=X``) replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-"):
            name, eq, _ = arg.partition("=")
            if is_secret_name(name):
                if eq:
                    out.append(f"{name}={REDACTED}")
                else:
                    out.append(arg)
                    hide_next = True
                continue
        out.append(scrub(arg))
    return out


def redact_mapping(obj: Any) -> Any:
    """A copy of nested dicts / lists with values under secret keys replaced and secret values scrubbed from
    strings (for saved configs such as ``training_args.json``)."""
    if isinstance(obj, Mapping):
        return {k: (REDACTED if isinstance(k, str) and is_secret_name(k) and v not in (None, "") else redact_mapping(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_mapping(v) for v in obj)
    if isinstance(obj, str):
        return scrub(obj)
    return obj


def register_argument_secrets(*arg_objects: Any) -> None:
    """Register the value of every secret-named field of argument dataclasses (``hub_token``, ...)."""
    for args in arg_objects:
        for name, value in vars(args).items() if hasattr(args, "__dict__") else ():
            if is_secret_name(name):
                register_secret(value)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secret values from every record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's business, not ours
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()
_LOGGERS = ("", "transformers", "hf_vcr", "accelerate", "huggingface_hub", "datasets")


def install_log_redaction() -> None:
    """Scrub secrets from the records of the root, transformers, accelerate, huggingface_hub and hf_vcr loggers and
    of their handlers (idempotent). A filter on a logger does not see its children's records, so the handlers that
    print them get the filter too."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
