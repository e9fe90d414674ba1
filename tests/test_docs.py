"""Every `excnet ...` command shown in the README and in docs/*.md parses with the real CLI.

The commands are taken from the fenced code blocks of README.md and every docs/*.md page
(new pages are picked up as they appear). A shell line is cut at comments, joined across
backslash continuations and split at pipes, `&&`, `||` and `;`; redirections and environment
assignments are dropped, `$VAR` becomes a placeholder value, and each piece that runs `excnet`
is given to the parser that `excnet` itself builds (`excnet.cli.build_parser`). Nothing is run:
only the options and their values are checked (an option that does not exist, a value that
is not one of the choices, a missing argument).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from excnet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]

#: Code blocks in these languages are not shell and hold no `excnet` command line.
NOT_SHELL = {"python", "py", "pycon", "json", "jsonl", "nginx", "ini", "toml", "text-output"}
#: Tokens that may precede the program on a line: `$ excnet ...`, `sudo excnet ...`.
PREFIXES = {"$", "sudo", "exec", "time", "nohup", "env"}
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_VAR = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_REDIRECT_ALONE = re.compile(r"^\d*(>>?|<|>&|&>)$")
_REDIRECT_JOINED = re.compile(r"^\d*(>>?|<|&>)(&?\d+|\S+)$")


def doc_files() -> list[Path]:
    """README.md and every Markdown page under docs/ (sorted)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(first line number, language, lines) of each fenced code block."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i + 2
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[:3]):
            body.append(lines[i])
            i += 1
        blocks.append((start, lang, body))
        i += 1
    return blocks


def logical_lines(lines: list[str], first: int) -> list[tuple[int, str]]:
    """Join backslash continuations; (line number of the first physical line, text)."""
    out, buf, at = [], "", None
    for n, line in enumerate(lines, first):
        if at is None:
            at = n
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        out.append((at, buf + stripped))
        buf, at = "", None
    if buf:
        out.append((at, buf))
    return out


def split_commands(line: str) -> list[str]:
    """Cut a shell line into simple commands at unquoted |, ||, &&, ; and & (not inside
    quotes or $( )), and at an unquoted # that starts a comment."""
    parts, cur, quote, depth, i = [], [], None, 0, 0
    while i < len(line):
        c = line[i]
        if quote:
            cur.append(c)
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"' and i + 1 < len(line):
                cur.append(line[i + 1])
                i += 1
        elif c in "'\"":
            quote = c
            cur.append(c)
        elif c == "\\" and i + 1 < len(line):
            cur.append(line[i:i + 2])
            i += 1
        elif line.startswith("$(", i):
            depth += 1
            cur.append("$(")
            i += 1
        elif c == ")" and depth:
            depth -= 1
            cur.append(c)
        elif depth:
            cur.append(c)
        elif c == "#" and (not cur or "".join(cur)[-1:].isspace()):
            break
        elif c in "|;&":
            if c == "&" and "".join(cur)[-1:] in (">", "<"):  # 2>&1, >&2
                cur.append(c)
            else:
                parts.append("".join(cur))
                cur = []
                if line[i + 1:i + 2] == c:  # || and &&
                    i += 1
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def excnet_argv(command: str) -> list[str] | None:
    """The arguments after `excnet` in one simple command, or None if it does not run excnet.
    Environment assignments, `$ ` prompts and redirections are dropped, $VAR becomes a
    placeholder, and a `[...]` token (an optional part written out) is left out."""
    try:
        tokens = shlex.split(_VAR.sub("1", command))
    except ValueError:
        return None
    while tokens and (_ASSIGN.match(tokens[0]) or tokens[0] in PREFIXES):
        tokens.pop(0)
    if not tokens or Path(tokens[0]).name != "excnet":
        return None
    argv, rest = [], tokens[1:]
    while rest:
        tok = rest.pop(0)
        if _REDIRECT_ALONE.match(tok):
            if rest:
                rest.pop(0)
        elif _REDIRECT_JOINED.match(tok) and not tok.startswith("-"):
            continue
        elif tok.startswith("[") and tok.endswith("]"):
            continue
        else:
            argv.append(tok)
    return argv


def commands_in(text: str) -> list[tuple[int, list[str]]]:
    """(line number, argv after `excnet`) of every excnet command in the text's code blocks."""
    found = []
    for first, lang, body in code_blocks(text):
        if lang in NOT_SHELL:
            continue
        for n, line in logical_lines(body, first):
            for command in split_commands(line):
                argv = excnet_argv(command)
                if argv is not None:
                    found.append((n, argv))
    return found


def parse_error(argv: list[str]) -> str | None:
    """None if `excnet ARGV` parses (help and --version count as parsing), else what argparse
    said. Nothing is run."""
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip() or f"exit status {exc.code}"
    return None


def all_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in doc_files():
        if path.exists():
            for n, argv in commands_in(path.read_text(encoding="utf-8")):
                found.append((f"{path.relative_to(ROOT)}:{n}", argv))
    return found


COMMANDS = all_commands()


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_parses(where, argv):
    problem = parse_error(argv)
    assert problem is None, f"{where}: excnet {shlex.join(argv)}\n{problem}"


def test_the_readme_shows_commands_of_every_sub_command():
    shown = {argv[0] for where, argv in COMMANDS if where.startswith("README.md") and argv}
    assert {"restore", "estimate", "video", "batch", "serve"} <= shown
    assert sum(where.startswith("README.md") for where, _ in COMMANDS) >= 15


def test_the_check_can_fail():
    """The same helper refuses what the parser refuses: a made-up option, a value outside the
    choices, a missing input."""
    assert parse_error(["restore", "photo.jpg"]) is None
    assert "--no-such-option" in parse_error(["restore", "photo.jpg", "--no-such-option"])
    assert parse_error(["restore", "photo.jpg", "--denoise", "loud"]) is not None
    assert parse_error(["video"]) is not None
    assert parse_error(["polish", "photo.jpg"]) is not None


def test_extraction_handles_shell_syntax():
    text = "\n".join([
        "Some prose with `excnet restore --bogus` inline (not a code block).",
        "```bash",
        "excnet restore a.jpg -o out/ --json > records.jsonl   # a comment --bogus",
        "cat photo.jpg | excnet restore - > restored.jpg",
        "excnet estimate s/*.jpg --save c.json && excnet restore s/ -o o/ --params c.json",
        "EXCNET_TOKEN=x excnet serve --host 0.0.0.0 \\",
        "    --port $PORT --token-file \"$HOME/tokens\" 2>&1 | tee log",
        "$ excnet batch IN OUT -j 2 [--json]",
        ".venv/bin/excnet video clip.mp4 -o out.mp4; echo done",
        "curl -F params=\"$(cat c.json | jq .)\" http://h/api  # excnet in a comment",
        "```",
        "```python",
        "excnet.restore(pixels)",
        "```",
    ])
    assert [argv for _, argv in commands_in(text)] == [
        ["restore", "a.jpg", "-o", "out/", "--json"],
        ["restore", "-"],
        ["estimate", "s/*.jpg", "--save", "c.json"],
        ["restore", "s/", "-o", "o/", "--params", "c.json"],
        ["serve", "--host", "0.0.0.0", "--port", "1", "--token-file", "1/tokens"],
        ["batch", "IN", "OUT", "-j", "2"],
        ["video", "clip.mp4", "-o", "out.mp4"],
    ]
    assert [n for n, _ in commands_in(text)] == [3, 4, 5, 5, 6, 8, 9]
