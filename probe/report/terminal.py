"""Rich terminal reports for `probe align`, `probe linear` and `probe demo`: every score beside its chance
level, calibrated score, p-value and interval. Laid out to fit 80 columns: names are never cut (one table
per model pair, short numeric columns), numbers follow `probe.report.numbers`.

Every column says what its cells hold (`add_column`): numbers and names are never broken, phrases wrap at
spaces. Rich computes the widths from that alone, once, when it prints a table: a table wider than the
console narrows its phrase columns (a verdict goes on two lines) instead of cutting cells short with "…"."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.table import Table

from probe.models.names import RANDOM_INIT_PREFIX
from probe.report.listings import house_table
from probe.report.numbers import fmt_interval, fmt_num, fmt_p, fmt_params, wilson_interval
from probe.report.plots import heatmap_text


def _table(title: str) -> Table:
    return house_table(title)


# What a column's cells may give up when the table is wider than the console. "number" and "name": nothing
# (a cut number or name reads as another one); "words" and "figures" (numbers in a phrase, "0.181 (0.070)"):
# they wrap at spaces, and fold a word longer than the column rather than end it in "…".
_KINDS: dict[str, dict[str, Any]] = {
    "number": {"justify": "right", "no_wrap": True},
    "name": {"justify": "left", "no_wrap": True},
    "words": {"justify": "left", "overflow": "fold"},
    "figures": {"justify": "right", "overflow": "fold"},
}


def add_column(table: Table, header: str, *, kind: str) -> None:
    """Add the column `header` to `table`, its cells of `kind` ("number", "name", "words" or "figures")."""
    table.add_column(header, **_KINDS[kind])


def _stacked(name: str) -> str:
    """A metric name as a column header that wraps at its underscores ("unbiased_\ncka")."""
    return name.replace("_", "_\n")


def align_table(pair: Any, *, permutations: int) -> Table:
    """One (vision, text) pair: per metric the best score, its layer pair (hidden states), chance, null max
    mean, calibrated score, p-value and interval."""
    table = _table(f"{pair.vision_name} vs {pair.text_name}")
    for col in ("metric", "best", "v,t", "chance", "null", "calib.", "p", "95% interval"):
        add_column(table, col, kind="name" if col == "metric" else "number")
    for name, m in pair.report.metrics.items():
        vl, tl = pair.vision.layers[m.best_pair[0]], pair.text.layers[m.best_pair[1]]
        sig = "green" if m.p_value is not None and m.p_value < 0.05 else "yellow"
        table.add_row(
            name,
            f"[bold]{fmt_num(m.best_score)}[/]",
            f"{vl},{tl}",
            fmt_num(m.chance_level),
            fmt_num(m.null_max_mean),
            f"[{sig}]{fmt_num(m.calibrated_score)}[/]",
            fmt_p(m.p_value, permutations=permutations),
            fmt_interval(m.max_interval),
        )
    return table


def _control_label(name: Optional[str], vision: str) -> str:
    if name is None:
        return "–"
    return "random-init" if name == f"{RANDOM_INIT_PREFIX}{vision}" else name


def controls_table(rows: list, *, vision: str, text: str) -> Table:
    """The model beside its best control per metric: both calibrated scores, the difference with its paired
    interval over the same subsamples, and the verdict at 95%."""
    table = _table(f"{vision} vs {text}: against the best control (calibrated scores)")
    kinds = {"metric": "name", "best control": "name", "verdict": "words"}
    for col in ("metric", "model", "best control", "control", "diff.", "95% interval", "verdict"):
        add_column(table, col, kind=kinds.get(col, "number"))
    for r in rows:
        c = r.comparison
        if c is None:
            table.add_row(r.metric, "–", "–", "–", "–", "–", "no control")
            continue
        verdict = "–" if c.above is None else ("[green]above[/]" if c.above else "[yellow]not above[/]")
        table.add_row(
            r.metric,
            fmt_num(c.model_calibrated),
            _control_label(r.control, vision),
            fmt_num(c.control_calibrated),
            fmt_num(c.difference),
            fmt_interval(c.interval),
            verdict,
        )
    return table


def sizes_table(rows: list, *, vision: str, text: str, permutations: int) -> Table:
    """Scores of one pair at each N: raw max, chance, null max mean, calibrated, p."""
    table = _table(f"{vision} vs {text} at several N (compare calibrated scores across N)")
    for col in ("N", "metric", "best", "chance", "null", "calib.", "p"):
        add_column(table, col, kind="name" if col == "metric" else "number")
    for r in sorted(rows, key=lambda r: (r.metric, r.n)):
        table.add_row(
            str(r.n),
            r.metric,
            fmt_num(r.best),
            fmt_num(r.chance),
            fmt_num(r.null_max_mean),
            fmt_num(r.calibrated),
            fmt_p(r.p_value, permutations=permutations),
        )
    return table


def scaling_tables(run: Any) -> list[Table]:
    """Per text model, the vision models ordered by parameters with the best score of each metric (WebSSL's
    scaling view). One table per text model keeps every name whole at 80 columns."""
    metrics = list(run.settings.metrics)
    tables = []
    everything = run.pairs + list(getattr(run, "control_pairs", []))
    for text in dict.fromkeys(p.text_name for p in everything):
        table = _table(f"scaling against {text}: best score over layer pairs")
        add_column(table, "vision", kind="name")
        add_column(table, "params", kind="number")
        for m in metrics:
            add_column(table, _stacked(m), kind="number")
        pairs = [p for p in everything if p.text_name == text]
        for pair in sorted(
            pairs, key=lambda p: (run.vision_params_m.get(p.vision_name) or float("inf"), p.vision_name)
        ):
            size = fmt_params(run.vision_params_m.get(pair.vision_name), billions=False)
            table.add_row(pair.vision_name, size, *(fmt_num(pair.report.metrics[m].best_score) for m in metrics))
        tables.append(table)
    return tables


def render_align(run: Any, console: Optional[Console] = None, *, heatmap_metric: Optional[str] = None) -> None:
    """Print the alignment report of an `AlignRun`: a table per pair, terminal heatmaps, the scaling table,
    file locations."""
    console = console or Console()
    s = run.settings
    n = run.dataset["rows"]
    clamp = "no clamp" if s.clip_quantile is None else f"clamp at the {s.clip_quantile:g} quantile"
    console.print(
        f"[bold]alignment[/] on {run.dataset['name']} (N={n}), k={s.k}, {clamp}, {s.permutations} permutations, "
        f"{s.subsamples} subsamples of {s.subsample_fraction:.0%}, seed {s.seed}"
    )
    for pair in run.pairs:
        console.print(align_table(pair, permutations=s.permutations))
        rows = [r for r in run.control_rows if r.vision == pair.vision_name and r.text == pair.text_name]
        if rows:
            console.print(controls_table(rows, vision=pair.vision_name, text=pair.text_name))
    for pair in run.control_pairs:
        table = align_table(pair, permutations=s.permutations)
        table.title = f"control: {pair.vision_name} vs {pair.text_name}"
        console.print(table)
    for pair in run.ceiling:
        table = align_table(pair, permutations=s.permutations)
        table.title = f"ceiling (two language models): {pair.vision_name} vs {pair.text_name}"
        console.print(table)
    console.print(
        "best: the max over all layer pairs; v,t: its hidden states (0 = embeddings); chance: the best pair's "
        "score with random pairing (k/(N-1) for mutual_knn); null: mean of the max under the permutation "
        "null; calib. = (best - null) / (1 - null): 0 at chance for the max, 1 = perfect; p: permutation "
        "test of the max; interval: subsamples without replacement.",
        style="dim",
    )
    metric = heatmap_metric or s.metrics[0]
    colour = console.color_system is not None
    for pair in run.pairs:
        m = pair.report.metrics[metric]
        console.print(
            heatmap_text(
                m.matrix,
                title=f"{metric}: {pair.vision_name} (rows) x {pair.text_name} (columns), ★ = best",
                row_labels=pair.vision.layers,
                col_labels=pair.text.layers,
                best=m.best_pair,
                colour=colour,
                width=console.width,
            )
        )
    if len({p.vision_name for p in run.pairs + run.control_pairs}) > 1:
        for table in scaling_tables(run):
            console.print(table)
    for vision, text in dict.fromkeys((r.vision, r.text) for r in run.size_rows):
        console.print(
            sizes_table(
                [r for r in run.size_rows if r.vision == vision and r.text == text],
                vision=vision,
                text=text,
                permutations=s.permutations,
            )
        )
    if run.size_rows:
        console.print(
            "Raw scores fall as N grows (and the max over layer pairs is inflated more at small N); the "
            "calibrated score is the one to compare across N.",
            style="dim",
        )
    if run.control_rows:
        console.print(
            "Controls: pixels-16 is the image itself at 16x16 RGB; random-init is the model's architecture "
            "with fresh weights. verdict: 'above' when the paired 95% interval of the difference in "
            "calibrated scores (same subsamples for both) lies above 0.",
            style="dim",
        )
    if run.results_path is not None:
        console.print(f"results: {run.results_path}", highlight=False, soft_wrap=True)
        console.print(f"heatmaps: {run.results_path.parent}/*.png", highlight=False, soft_wrap=True)


def _alpha(x: float) -> str:
    """A regularisation strength on a log grid, compactly: 1e4, 1e-2, 3e-3."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def linear_task_table(task: Any) -> Table:
    """Per-layer table of one `probe.runs.linear.LinearTask`, each figure beside its control; best layer starred.
    All figures are fractions; the test split's size and a 95% interval of the headline proportion are shown."""
    first = task.sweep.layers[0].result
    n_test = int(first.n_test)
    title = f"{task.name} ({task.kind}); best layer by validation: {task.best_state}; {n_test} test rows"
    if task.kind == "crossmodal":
        title += (
            f"; chance top-1 {fmt_num(first.chance_top1)}, top-5 {fmt_num(first.chance_top5)} "
            "(the shuffled-pair control's top-1 is in the JSON)"
        )
    table = _table(title)
    add_column(table, "layer", kind="number")
    if task.kind == "labels":
        cols = ("acc.", "95% CI", "shuffled", "majority", "bal. acc.", "macro-F1", "C")
    elif task.kind == "words":
        cols = ("mean AP", "shuffled", "base rate", "AUROC", "shuffled", "alpha")
    else:
        cols = ("R²", "shuffled", "top-1", "top-5", "95% CI", "shuffled", "alpha")
    for c in cols:
        add_column(table, c, kind="number")
    for entry, state in zip(task.sweep.layers, task.hidden_states):
        r = entry.result
        mark = "★ " if entry.layer == task.sweep.best_layer else ""
        if task.kind == "labels":
            ci = wilson_interval(r.probe.accuracy * n_test, n_test)
            cells = (
                fmt_num(r.probe.accuracy),
                fmt_interval(ci),
                fmt_num(r.control.accuracy),
                fmt_num(r.majority_rate),
                fmt_num(r.probe.balanced_accuracy),
                fmt_num(r.probe.macro_f1),
                _alpha(r.probe.chosen_c),
            )
        elif task.kind == "words":
            cells = (
                fmt_num(r.probe.macro_average_precision),
                fmt_num(r.control.macro_average_precision),
                fmt_num(r.probe.macro_base_rate),
                fmt_num(r.probe.macro_auroc),
                fmt_num(r.control.macro_auroc),
                _alpha(r.probe.chosen_alpha),
            )
        else:
            ci = wilson_interval(r.probe.top5 * n_test, n_test)
            cells = (
                fmt_num(r.probe.r2),
                fmt_num(r.control.r2),
                fmt_num(r.probe.top1),
                fmt_num(r.probe.top5),
                fmt_interval(ci),
                fmt_num(r.control.top5),
                _alpha(r.probe.chosen_alpha),
            )
        table.add_row(f"{mark}{state}", *cells, style="bold" if mark else None)
    return table


def render_linear(run: Any, console: Optional[Console] = None) -> None:
    """Print the per-layer tables of a `LinearRun` and where the results were written."""
    console = console or Console()
    console.print(
        f"[bold]linear probes[/] of {run.vision.key['model']['name']} on {run.dataset['name']} "
        f"(N={run.dataset['rows']}), seed {run.settings.seed}"
    )
    for task in run.tasks:
        console.print(linear_task_table(task))
    console.print(
        "Layers are hidden states (0 = embeddings). The best layer is chosen on validation data, so its test "
        "figures are not selected on the test split. shuffled: the same procedure on shuffled labels / "
        "shuffled image-caption pairs. 95% CI: Wilson interval over the test rows.",
        style="dim",
    )
    if run.results_path is not None:
        console.print(f"results: {run.results_path}", highlight=False, soft_wrap=True)


_FIGURES = {"accuracy": "acc.", "mean average precision": "mean AP", "caption retrieval top-5": "top-5"}


def _side_by_side(
    title: str,
    records: list[dict[str, Any]],
    *,
    keys: tuple[str, str],
    headers: tuple[str, str],
    visions: list[str],
    cell: Any,
    last: tuple[str, str],
) -> Table:
    """One row per value of `keys` in `records`, one column per vision model (`cell(record)`), then the column
    `last` = (header, field) taken from the first vision model's record."""
    table = _table(title)
    add_column(table, headers[0], kind="words")
    add_column(table, headers[1], kind="words")
    for v in visions:
        add_column(table, v, kind="figures")
    add_column(table, last[0], kind="number")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        rows.setdefault((r[keys[0]], r[keys[1]]), {})[r["vision"]] = r
    for (first, second), cells in rows.items():
        reference = cells.get(visions[0], next(iter(cells.values())))
        table.add_row(
            _FIGURES.get(first, first),
            _FIGURES.get(second, second),
            *(cell(cells[v]) if v in cells else "–" for v in visions),
            fmt_num(reference[last[1]]),
        )
    return table


def demo_tables(summary: dict[str, Any]) -> list[Table]:
    """The trained model beside its controls: one table for alignment (best score, calibrated score in
    brackets) with chance, one for the probes (value / shuffled control) with the baseline."""
    visions = list(dict.fromkeys(r["vision"] for r in summary["alignment"] + summary["linear"]))
    return [
        _side_by_side(
            "alignment: best over layer pairs (calibrated)",
            summary["alignment"],
            keys=("metric", "text"),
            headers=("metric", "text"),
            visions=visions,
            last=("chance", "chance"),
            cell=lambda r: f"{fmt_num(r['best'])} ({fmt_num(r['calibrated'])})",
        ),
        _side_by_side(
            "linear probes: best layer's test figure / its shuffled control",
            summary["linear"],
            keys=("task", "figure"),
            headers=("task", "figure"),
            visions=visions,
            last=("baseline", "baseline"),
            cell=lambda r: f"{fmt_num(r['value'])}/{fmt_num(r['control'])}",
        ),
    ]


def render_demo(run: Any, console: Optional[Console] = None) -> None:
    """The demo report: the alignment report, the linear tables, and the trained-vs-control summary last."""
    console = console or Console()
    render_align(run.align, console)
    for lin in run.linear.values():
        render_linear(lin, console)
    console.rule("summary")
    for table in demo_tables(run.summary):
        console.print(table)
    console.print(
        "alignment: calibrated against the permutation null of the max over layer pairs; chance for mutual_knn "
        "= k/(N-1). probes: best layer chosen on validation; baseline = majority class (accuracy), word base "
        "rate (mean AP), 5/N_test (top-5).",
        style="dim",
    )
    console.rule("is the model trained without text above what no learning gives?")
    for line in run.summary["verdicts"]:
        console.print(f"- {line}", highlight=False)
    if run.results_path is not None:
        console.print(f"demo results: {run.results_path}", highlight=False, soft_wrap=True)
