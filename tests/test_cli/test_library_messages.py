"""The library words its messages in its own argument names (`seed=3`, `overwrite=always`); only the CLI
(probe/cli/) knows flags, and `probe.cli.options.as_flags` turns those names into the flags the user typed.

The rule the scan enforces: no string literal in a .py file under probe/ outside probe/cli/ holds a `--flag`
token, docstrings included (a library docstring documents the library, so it names arguments too; the CLI's
own docstrings and help texts live in probe/cli/). String constants and the literal parts of f-strings are
read with `ast`, so comments and code are not scanned. The only tokens allowed are the flags of other programs
that the library runs or tells the user to run (`EXTERNAL_FLAGS`), and none of them may be a probe flag.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from probe.cli.options import LIBRARY_FLAGS, as_flags

PACKAGE = Path(__file__).resolve().parents[2] / "probe"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")

# Arguments of pip and git, not of probe: `pip install --no-deps ...` in a model's install hint,
# `pip ... --force-reinstall` in a broken-package hint, `git status --porcelain --untracked-files=no` for provenance.
EXTERNAL_FLAGS = {"--no-deps", "--force-reinstall", "--porcelain", "--untracked-files"}


def _string_parts(tree: ast.AST) -> list[ast.Constant]:
    """Every str constant in `tree`: plain literals, docstrings and the literal parts of f-strings."""
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def flag_tokens(package: Path = PACKAGE) -> list[tuple[str, str]]:
    """("path:line", token) for each `--flag` token in a string literal of a library module (not probe/cli/)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        if relative.parts[1] == "cli":
            continue
        for node in _string_parts(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for match in FLAG.finditer(node.value):
                # The string's first line plus the newlines before the token: exact for multi-line literals.
                line = node.lineno + node.value[: match.start()].count("\n")
                found.append((f"{relative}:{line}", match.group()))
    return found


def _probe_flags() -> set[str]:
    """Every option name of every probe command, and of the root command."""
    import typer.main

    from probe.cli.main import app

    root = typer.main.get_command(app)
    commands = [root, *getattr(root, "commands", {}).values()]
    return {
        opt
        for command in commands
        for param in command.params
        for opt in getattr(param, "opts", ())
        if opt.startswith("--")
    }


def test_library_strings_name_arguments_not_flags():
    offending = [f"{where}: {token}" for where, token in flag_tokens() if token not in EXTERNAL_FLAGS]
    assert not offending, "library strings that name CLI flags (use the argument, e.g. seed=3):\n" + "\n".join(
        offending
    )


def test_the_allowed_tokens_are_other_programs_flags_and_still_used():
    probe_flags = _probe_flags()
    assert {"--seed", "--overwrite", "--cache-dir", "--model"} <= probe_flags  # the introspection sees the flags
    assert not EXTERNAL_FLAGS & probe_flags
    assert {token for _, token in flag_tokens()} == EXTERNAL_FLAGS  # an allowance nobody needs is removed


def test_the_scan_sees_docstrings_and_f_string_parts(tmp_path):
    module = tmp_path / "probe" / "models" / "m.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        '"""Reads\nthe --layers."""\n# a comment may say --seed\nx = 3\nmessage = f"{x}: check --model {x}"\n'
        "name = '--limit'\nflag_free = 'pre--fix, x--y, -- and -1'\n"
    )
    cli = tmp_path / "probe" / "cli" / "c.py"
    cli.parent.mkdir()
    cli.write_text('help = "--seed N"\n')
    assert sorted(flag_tokens(tmp_path / "probe")) == [
        ("probe/models/m.py:2", "--layers"),
        ("probe/models/m.py:5", "--model"),
        ("probe/models/m.py:6", "--limit"),
    ]


def test_every_argument_named_in_a_library_message_shows_as_a_flag():
    # The arguments the rewritten messages name: each maps to a flag the CLI has.
    probe_flags = _probe_flags()
    for name in ("seed", "overwrite", "cache_dir", "model", "revision", "dataset", "limit", "pool", "dtype"):
        assert LIBRARY_FLAGS[name] in probe_flags, name


@pytest.mark.parametrize(
    "library, cli",
    [
        ("seed=3 applies to random-init models only", "--seed 3 applies to random-init models only"),
        ("drop seed=, or use random-init:x.", "drop --seed, or use random-init:x."),
        ("check revision=.", "check --revision."),
        ("(or pass pool=)", "(or pass --pool)"),
        ("extract both with the same dataset= and limit=", "extract both with the same --dataset and --limit"),
        (
            "re-extract it with 'probe extract ... overwrite=always'",
            "re-extract it with 'probe extract ... --overwrite always'",
        ),
        ("try dtype=float32)", "try --dtype float32)"),
        ("path=./data", "--path ./data"),
    ],
)
def test_as_flags_reads_like_the_command_line(library, cli):
    assert as_flags(library) == cli
