"""Global things of the command line: --version, the global --cache-dir, and library warnings counted at the end
of a command instead of printed one by one."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from probe import __version__
from probe.cli.main import app
from probe.log import captured_library_warnings, warnings_summary_line


def test_version(cli):
    code, out, _ = cli(["--version"], unwrap=True)
    assert code == 0 and out.strip() == f"probe {__version__}"
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"probe {__version__}"


def test_global_cache_dir_is_used_and_a_commands_own_wins(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("PROBE_CACHE", str(tmp_path / "from-env"))
    code, out, _ = cli(["--cache-dir", str(tmp_path / "global"), "cache", "ls"], unwrap=True)
    assert code == 0 and f"feature caches in {tmp_path / 'global'}" in out
    args = ["--cache-dir", str(tmp_path / "global"), "cache", "ls", "--cache-dir", str(tmp_path / "own")]
    code, out, _ = cli(args, unwrap=True)
    assert code == 0 and f"feature caches in {tmp_path / 'own'}" in out
    code, out, _ = cli(["cache", "ls"], unwrap=True)  # the previous call's global flag does not linger
    assert code == 0 and f"feature caches in {tmp_path / 'from-env'}" in out


def test_help_lists_the_global_flags():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--version", "--cache-dir", "--debug", "--quiet", "--threads"):
        assert flag in result.output
    align = " ".join(CliRunner().invoke(app, ["align", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "offline: openmoji" in align and "the global --cache-dir" in align


def _sklearn_warnings(fits: int) -> None:
    """Real scikit-learn warnings: `fits` ConvergenceWarnings and one UserWarning (a class of one member)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    y = np.array([0, 1] * 14 + [2, 2])
    for _ in range(fits):
        LogisticRegression(max_iter=1).fit(x, y)
    list(StratifiedKFold(n_splits=3).split(x, np.array([0, 1] * 14 + [0, 2])))  # class 2 has one member


def test_warnings_are_counted_by_source_and_logged_not_printed(capsys, caplog):
    caplog.set_level(logging.DEBUG, logger="probe")
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # count every occurrence, whatever filters the test runner set
        with captured_library_warnings() as capture:
            _sklearn_warnings(fits=3)
    err = capsys.readouterr().err
    assert "Warning:" not in err and "least populated" not in err  # not printed as they happened
    captured = capture.summary()
    counts = [(w.category, w.package, w.count) for w in captured]
    assert counts == [("ConvergenceWarning", "sklearn", 3), ("UserWarning", "sklearn", 1)]
    assert captured[0].module.startswith("sklearn.") and "converge" in captured[0].message
    line = (
        "4 library warnings: 3 ConvergenceWarning from sklearn, 1 UserWarning from sklearn (the DEBUG log shows them)"
    )
    assert warnings_summary_line(captured) == line
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    debugs = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert infos == [line]
    assert len(debugs) == 2 and debugs[0].startswith("3 x ConvergenceWarning at sklearn.") and "converge" in debugs[0]


def test_warning_filters_still_apply():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as with `python -W error`: a warning stays an exception
        with pytest.raises(Warning), captured_library_warnings():
            _sklearn_warnings(fits=1)
        warnings.simplefilter("ignore")
        with captured_library_warnings() as capture:
            _sklearn_warnings(fits=1)
        assert capture.summary() == []


@pytest.fixture
def warning_command(monkeypatch):
    """A command that makes scikit-learn warn, registered for one test."""
    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))

    @app.command("sklearn-warnings")
    def _command() -> None:
        _sklearn_warnings(fits=2)


def test_a_command_ends_with_one_warning_line_and_debug_shows_the_text(warning_command, cli, monkeypatch):
    import probe.cli.main

    monkeypatch.setenv("COLUMNS", "400")  # one log record per line, whatever --debug adds beside it
    # The stderr console may have measured the terminal before COLUMNS was set (another test imported it first).
    monkeypatch.setattr(probe.cli.main.err_console, "_width", 400)  # restored to auto-detection afterwards
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, _, err = cli(["sklearn-warnings"], unwrap=True)
        assert code == 0
        assert "3 library warnings: 2 ConvergenceWarning from sklearn, 1 UserWarning from sklearn" in err
        assert "converge" not in err.replace("ConvergenceWarning", "") and "least populated" not in err
        code, _, err = cli(["--debug", "sklearn-warnings"], unwrap=True)
        assert code == 0 and "2 x ConvergenceWarning at sklearn." in err and "least populated" in err
        code, _, err = cli(["--quiet", "sklearn-warnings"], unwrap=True)
        assert code == 0 and err == ""


class _Seen(logging.Handler):
    """Stands for any handler the library has on its logger (transformers' own writes to the stderr of its import)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_transformers_logged_warnings_are_counted_not_printed():
    from transformers.utils import logging as hf_logging

    vit_logger = hf_logging.get_logger("transformers.models.vit")
    seen = _Seen()
    logging.getLogger("transformers").addHandler(seen)
    try:
        vit_logger.warning("before")
        with captured_library_warnings() as capture:
            vit_logger.warning("a transformers warning")
            vit_logger.error("a transformers error")
        vit_logger.warning("after")
    finally:
        logging.getLogger("transformers").removeHandler(seen)
    assert seen.messages == ["before", "a transformers error", "after"]  # warnings muted only inside
    counts = [(w.category, w.module, w.count) for w in capture.summary()]
    assert counts == [("logged warning", "transformers.models.vit", 1)]


def test_torchvision_fallback_warning_logged_at_import_is_counted(tmp_path):
    # transformers configures its logger and warns while the import runs, inside the capture: the real case.
    # With CI=1 transformers propagates its records to the root logger, whose handler must stay quiet too; the
    # two cases run as two processes at once.
    import importlib.util
    import os
    import subprocess
    import sys

    import transformers

    if importlib.util.find_spec("torchvision") is not None or int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("transformers warns about a missing torchvision only from version 5, and only without it")
    code = (
        "import logging; logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from probe.log import captured_library_warnings\n"
        "with captured_library_warnings():\n"
        "    from transformers import ViTImageProcessor\n"
    )
    paths = [str(Path(__file__).resolve().parents[2]), *filter(None, [os.environ.get("PYTHONPATH")])]
    procs = {
        ci: subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths), "CI": ci},
        )
        for ci in ("", "1")
    }
    for ci, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, (ci, stderr)
        assert "requires torchvision" not in stderr, (ci, stderr)
        assert "1 library warning: 1 logged warning from transformers (the DEBUG log shows them)" in stderr, (
            ci,
            stderr,
        )
