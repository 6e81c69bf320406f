"""Every training command in the README and docs writes to its own output folder.

A user runs the documented commands one after another; a command that reused another's folder would find a
finished run there (and say so, or refuse) instead of training what it documents. Commands that only differ
in how they launch the same job name different folders too, so that each can be compared with the others.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from hf_vcr.flows import METHODS, resolve_shipped

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _code_lines(text: str):
    """The shell lines of the ```bash blocks, continuation lines joined."""
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" # ")[0].strip()
            if line and not line.startswith("#"):
                yield line


def training_commands():
    """(document, line, method, output folder) of every documented training run."""
    found = []
    for doc in DOCUMENTS:
        for line in _code_lines(doc.read_text(encoding="utf-8")):
            for part in line.split("&&"):
                try:
                    argv = shlex.split(part)
                except ValueError:
                    continue
                method, rest = None, []
                for i, token in enumerate(argv):
                    m = re.fullmatch(r"(?:.*/)?train_(\w+)\.py", token)
                    if m and m.group(1) in METHODS:
                        method, rest = m.group(1), argv[i + 1:]
                        break
                    if token == "train" and i > 0 and argv[i - 1] == "hf-vcr" and i + 1 < len(argv) and argv[i + 1] in METHODS:
                        method, rest = argv[i + 1], argv[i + 2:]
                        break
                if method is None or "--help" in rest or "-h" in rest:
                    continue
                out = None
                for i, token in enumerate(rest):
                    if token == "--output_dir" and i + 1 < len(rest):
                        out = rest[i + 1]
                    elif token.startswith("--output_dir="):
                        out = token.split("=", 1)[1]
                if out is None and rest and not rest[0].startswith("-"):
                    config = rest[0].replace("scripts/configs/", "")
                    try:
                        out = yaml.safe_load(Path(resolve_shipped(Path(config).stem)).read_text()).get("output_dir")
                    except FileNotFoundError:
                        out = f"<{config}>"  # a user's own config file: its own folder
                found.append((doc.name, " ".join(argv), method, out))
    return found


def test_documented_training_commands_are_found():
    commands = training_commands()
    methods = {m for _, _, m, _ in commands}
    assert methods == set(METHODS), methods  # every method has a documented command
    assert len(commands) >= 20


def test_every_documented_training_command_has_its_own_output_folder():
    seen: dict[str, str] = {}
    clashes = []
    for doc, line, _, out in training_commands():
        assert out, f"{doc}: no output folder for {line!r}"
        if out.startswith("<"):
            continue
        if out in seen and seen[out] != line:
            clashes.append(f"{doc}: {line!r} writes {out}, as does {seen[out]!r}")
        seen.setdefault(out, line)
    assert not clashes, "\n".join(clashes)
