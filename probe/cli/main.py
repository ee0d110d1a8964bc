"""The `probe` command line: parses flags and calls the library, nothing more.

Each command lives in its own module under `probe/cli/` and registers itself on `app`. Modules here import only
typer/rich at top level; torch and transformers are imported inside the command bodies so that
`probe --help` stays fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="probe",
    help="Measure how much language structure vision models trained without text share with language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from probe import __version__

        typer.echo(f"probe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors in the log."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch/BLAS (default: all cores). 1 is faster on a busy machine."
    ),
    cache_dir: Optional[Path] = typer.Option(
        None,
        "--cache-dir",
        help="Cache folder for every command (a command's own --cache-dir wins; "
        "default: $PROBE_CACHE, else ~/.cache/probe).",
    ),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print probe's version and exit."
    ),
) -> None:
    import os

    from rich.logging import RichHandler

    from probe.cli.options import set_global_cache_dir

    set_global_cache_dir(cache_dir)  # None when absent, so one process's earlier call never leaks into this one

    if threads is not None:
        # torch and BLAS read these when first imported, which happens after this callback.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)

    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    handler = RichHandler(console=err_console, show_path=debug, show_time=False, markup=False)
    log = logging.getLogger("probe")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def _register_commands() -> None:
    # Importing these modules runs their @app.command decorators.
    import importlib

    for name in (
        "probe.cli.info",
        "probe.cli.models",
        "probe.cli.extract",
        "probe.cli.cache",
        "probe.cli.align",
        "probe.cli.linear",
        "probe.cli.demo",
        "probe.cli.report",
        "probe.cli.explain",
        "probe.cli.compare",
        "probe.cli.study",
    ):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != name:
                raise


_register_commands()


def _usage_errors() -> tuple[type[BaseException], ...]:
    """The parser's usage-error classes: typer>=0.20 vendors click, older typer uses click itself."""
    classes: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            classes.append(__import__(module, fromlist=["ClickException"]).ClickException)
        except ImportError:
            continue
    return tuple(classes)


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point: run the app, turn project errors into one red line and exit code 2.

    Python warnings raised while the command runs are counted, not printed (`probe.log.captured_library_warnings`).
    """
    from probe.errors import ProbeError
    from probe.log import captured_library_warnings

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        # Third-party warnings (scikit-learn, transformers) become one summary line at the end, the text with --debug.
        with captured_library_warnings():
            rc = app(args=args, prog_name="probe", standalone_mode=False)
    except ProbeError as exc:
        if debug:
            err_console.print_exception()
        from probe.cli.options import as_flags

        # Escaped: a message may hold brackets (`pip install 'probe[hub]'`) that rich would read as markup.
        err_console.print(f"[bold red]error:[/] {escape(as_flags(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err_console.print("[red]aborted[/]")
        sys.exit(130)
    except _usage_errors() as exc:  # bad flags: the parser's own message and exit code (2)
        exc.show()
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
