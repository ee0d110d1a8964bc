"""probe.progress: library code reports through a callback `(done, total, what)`; the CLI's callback draws one
rich bar per task name on stderr, and a disabled one is None, so nothing is drawn."""

from __future__ import annotations

import numpy as np
import pytest
import rich.progress

from probe.linear import probe_layers
from probe.progress import fmt_rate, rich_progress


@pytest.mark.parametrize(
    "per_second, text",
    [(None, ""), (0, "0/s"), (0.5, "0.5/s"), (12.345, "12.3/s"), (10774.7, "10.8k/s"), (2.5e6, "2.5M/s")],
)
def test_rates_have_three_significant_digits_and_a_suffix(per_second, text):
    assert fmt_rate(per_second) == text


def test_disabled_progress_is_no_callback_and_prints_nothing(capfd):
    with rich_progress(enabled=False) as callback:
        assert callback is None
    assert capfd.readouterr() == ("", "")


def test_one_bar_per_task_name_on_stderr_showing_done_of_total(capfd, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    with rich_progress() as callback:
        assert callable(callback)
        for done in range(1, 11):
            callback(done, 10, "extract a")
        callback(1, 4, "layers")
        callback(2, 5, "layers")  # a task's total may change as it learns more
    out, err = capfd.readouterr()
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2, err
    assert lines[0].startswith("extract a") and "10/10" in lines[0]
    assert lines[1].startswith("layers") and "2/5" in lines[1]


def test_the_bar_is_closed_when_the_block_fails(monkeypatch):
    stopped = []
    stop = rich.progress.Progress.stop
    monkeypatch.setattr(rich.progress.Progress, "stop", lambda self: (stopped.append(True), stop(self))[1])
    with pytest.raises(RuntimeError, match="boom"), rich_progress() as callback:
        callback(1, 3, "work")
        raise RuntimeError("boom")
    assert stopped == [True]


def test_a_library_sweep_reports_each_layer_done_through_the_callback():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    x = rng.normal(size=(30, 3, 4)) + labels[:, None, None]
    calls = []
    probe_layers(x, task="labels", target=labels, seed=0, progress=lambda *a: calls.append(a))
    assert calls == [(1, 3, "layer 0"), (2, 3, "layer 1"), (3, 3, "layer 2")]
