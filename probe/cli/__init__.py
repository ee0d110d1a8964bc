"""The `probe` command line (Typer): flags in, one `probe.runs` call, one red line and exit code 2 on a
project error. Each command is a module here that registers itself on `probe.cli.main.app`.

`main` is the console script's entry point (`probe = "probe.cli:main"`); it imports the app on first call, so
importing `probe.cli.options` alone registers no command.
"""

from __future__ import annotations

from typing import Optional


def main(argv: Optional[list[str]] = None) -> None:
    """Run the command line on `argv` (default: `sys.argv[1:]`); exits the process with the command's status."""
    from probe.cli.main import main as run

    run(argv)
