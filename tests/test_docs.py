"""Every command the docs show exists, with flags its parser accepts.

A command line is one in a fenced code block, or an inline code span, of README.md,
docs/*.md, tuning/README.md or saved_models/README.md that runs `python scripts/X.py`,
`keras-cnns X` or `python -m keras_cnns X`. Each is checked against the command's own
`--help`, produced in-process by `keras_cnns.commands.run`, so a doc that names a removed
command or flag fails here. Placeholders (EXPORT, DIR, `<export>`) are positional and are
not checked; an upper-case command (`keras-cnns COMMAND`) is a placeholder too.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from keras_cnns.commands import COMMANDS, SCRIPT_NAMES, run

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "tuning" / "README.md", ROOT / "saved_models" / "README.md"]

# Where a command starts inside a shell line: after a separator, `&&`, an env assignment...
COMMAND_START = re.compile(
    r"(?:^|(?<=[\s;&|(]))(?:python scripts/(?P<script>[\w-]+)\.py"
    r"|keras-cnns (?P<console>[\w-]+)|python -m keras_cnns (?P<module>[\w-]+))(?=\s|$)"
)
# Forms that do not exist: `python -m keras_cnns.train`, `keras-cnns-train`.
GONE_FORMS = re.compile(r"python -m keras_cnns\.\w+|(?<![\w/])keras-cnns-\w+")
FENCE = re.compile(r"^\s*```")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"--[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class DocCommand:
    where: str  # "docs/training.md:12"
    command: str  # the `keras-cnns` command name
    line: str  # the shell text from the command's start to its separator
    flags: tuple[str, ...]


def shell_lines(text: str):
    """(line number, text) of every fenced code line (continuations joined) and inline span."""
    in_fence = False
    pending, pending_start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if FENCE.match(raw):
            in_fence = not in_fence
            continue
        if in_fence:
            if not pending:
                pending_start = number
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            yield pending_start, pending + raw
            pending = ""
        else:
            for span in INLINE_CODE.findall(raw):
                yield number, span


def command_name(match: re.Match) -> str | None:
    """The `keras-cnns` command a match runs; None for a placeholder such as COMMAND."""
    if match["script"]:
        return SCRIPT_NAMES.get(match["script"], match["script"])
    name = match["console"] or match["module"]
    return None if name.isupper() else name


def flags_of(segment: str) -> tuple[str, ...]:
    """The `--flags` of one command's text, in order, without their `=value`."""
    try:
        words = shlex.split(segment)
    except ValueError:  # an unbalanced quote inside prose: fall back to plain words
        words = segment.split()
    return tuple(dict.fromkeys(
        FLAG.fullmatch(word.split("=", 1)[0]).group()
        for word in words if FLAG.fullmatch(word.split("=", 1)[0])
    ))


def doc_commands(path: Path, text: str | None = None) -> list[DocCommand | str]:
    """Every command in one doc, and a message for every form that no longer exists."""
    text = path.read_text() if text is None else text
    found: list[DocCommand | str] = []
    relative = path.relative_to(ROOT) if path.is_absolute() else path
    for number, line in shell_lines(text):
        where = f"{relative}:{number}"
        for gone in GONE_FORMS.findall(line):
            found.append(f"{where}: {gone!r} does not exist; use `keras-cnns COMMAND`")
        line = re.split(r"\s#", line, maxsplit=1)[0]  # a shell comment is prose
        for piece in re.split(r"&&|\|\||;|\|", line):
            for match in COMMAND_START.finditer(piece):
                name = command_name(match)
                if name is None:
                    continue
                rest = piece[match.end():]
                following = COMMAND_START.search(rest)
                rest = rest[:following.start()] if following else rest
                found.append(DocCommand(where, name, match.group() + rest, flags_of(rest)))
    return found


_HELP: dict[str, str] = {}


def help_text(command: str) -> str:
    """The command's `--help`, run in-process (cached per command)."""
    if command not in _HELP:
        saved = {key: os.environ.get(key)
                 for key in ("KERAS_CNNS_NATIVE_LOGS", "TF_CPP_MIN_LOG_LEVEL")}
        os.environ["KERAS_CNNS_NATIVE_LOGS"] = "1"  # keep the stderr filter out of pytest
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exited:
                run(command, ["--help"], prog=f"keras-cnns {command}")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        assert exited.value.code in (0, None), f"keras-cnns {command} --help failed"
        _HELP[command] = output.getvalue()
    return _HELP[command]


def problems(found: DocCommand | str) -> list[str]:
    """Why one doc command would not run as written; empty when it would."""
    if isinstance(found, str):
        return [found]
    if found.command not in COMMANDS:
        return [f"{found.where}: no command {found.command!r} ({found.line.strip()})"]
    if found.line.startswith("python scripts/"):
        script = found.line.split()[1]
        if not (ROOT / script).is_file():
            return [f"{found.where}: {script} does not exist"]
    text = help_text(found.command)
    return [f"{found.where}: keras-cnns {found.command} has no {flag} ({found.line.strip()})"
            for flag in found.flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", text)]


ALL_FOUND = [item for path in DOCS if path.is_file() for item in doc_commands(path)]


def _id(item: DocCommand | str) -> str:
    return item.split(": ", 1)[0] if isinstance(item, str) else item.where


@pytest.mark.parametrize("found", ALL_FOUND, ids=_id)
def test_doc_command_runs_as_written(found):
    assert problems(found) == []


def test_the_docs_show_every_command():
    shown = {item.command for item in ALL_FOUND if isinstance(item, DocCommand)}
    assert set(COMMANDS) <= shown, f"not in any doc: {sorted(set(COMMANDS) - shown)}"


SAMPLE = """\
Text with `python scripts/predict.py EXPORT --top-k 3` inline.

```bash
KERAS_BACKEND=jax python scripts/train.py --model lenet --epochs=2 \\
    --lr 0.01   # a comment --not-a-flag
pip install -e . && keras-cnns verify EXPORT --data
python -m keras_cnns tune --max-trials 2 &
keras-cnns COMMAND --help
python scripts/train.py --model lenet --no-such-flag
keras-cnns no-such-command --model lenet
python -m keras_cnns.train --model lenet
```
"""


def test_extraction_reads_fences_continuations_and_inline_code():
    found = doc_commands(Path("SAMPLE.md"), SAMPLE)
    commands = [(item.where, item.command, item.flags) for item in found
                if isinstance(item, DocCommand)]
    assert commands == [
        ("SAMPLE.md:1", "predict", ("--top-k",)),
        ("SAMPLE.md:4", "train", ("--model", "--epochs", "--lr")),
        ("SAMPLE.md:6", "verify", ("--data",)),
        ("SAMPLE.md:7", "tune", ("--max-trials",)),
        ("SAMPLE.md:9", "train", ("--model", "--no-such-flag")),
        ("SAMPLE.md:10", "no-such-command", ("--model",)),
    ]


def test_a_removed_flag_command_or_form_fails():
    found = doc_commands(Path("SAMPLE.md"), SAMPLE)
    failures = [message for item in found for message in problems(item)]
    assert failures == [
        "SAMPLE.md:9: keras-cnns train has no --no-such-flag "
        "(python scripts/train.py --model lenet --no-such-flag)",
        "SAMPLE.md:10: no command 'no-such-command' (keras-cnns no-such-command --model lenet)",
        "SAMPLE.md:11: 'python -m keras_cnns.train' does not exist; use `keras-cnns COMMAND`",
    ]
