"""Rich terminal reports for `probe align`, `probe linear` and `probe demo`: every score beside its chance
level, calibrated score, p-value and interval."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.table import Table

from probe.report.plots import heatmap_text


def _fmt(x: Optional[float], digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _interval(iv: Optional[tuple[float, float]]) -> str:
    return "-" if iv is None else f"[{iv[0]:.3f}, {iv[1]:.3f}]"


def _p(p: Optional[float]) -> str:
    if p is None:
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def align_table(pairs: list, *, title: str) -> Table:
    """One row per (vision, text, metric): best score, its layer pair, chance, null, calibrated, p, interval."""
    table = Table(title=title, title_justify="left")
    for col, justify in (("vision", "left"), ("text", "left"), ("metric", "left"), ("best", "right"), ("layers v,t", "right"),
                         ("chance", "right"), ("null max", "right"), ("calibrated", "right"), ("p", "right"), ("95% interval", "right")):
        table.add_column(col, justify=justify)
    for pair in pairs:
        for name, m in pair.report.metrics.items():
            vl, tl = pair.vision.layers[m.best_pair[0]], pair.text.layers[m.best_pair[1]]
            null = "-" if m.null_max_mean is None else f"{m.null_max_mean:.3f}±{m.null_max_std:.3f}"
            sig = "green" if m.p_value is not None and m.p_value < 0.05 else "yellow"
            table.add_row(pair.vision_name, pair.text_name, name, f"[bold]{m.best_score:.3f}[/]", f"{vl},{tl}",
                          _fmt(m.chance_level), null, f"[{sig}]{_fmt(m.calibrated_score)}[/]", _p(m.p_value), _interval(m.max_interval))
    return table


def scaling_table(run: Any) -> Table:
    """Vision models ordered by parameters: the best score of each metric per text model (WebSSL's scaling view)."""
    metrics = list(run.settings.metrics)
    table = Table(title="scaling: vision models by parameters", title_justify="left")
    table.add_column("vision")
    table.add_column("params", justify="right")
    table.add_column("text")
    for m in metrics:
        table.add_column(m, justify="right")
    order = sorted(run.pairs, key=lambda p: (run.vision_params_m.get(p.vision_name) or float("inf"), p.vision_name, p.text_name))
    for pair in order:
        params = run.vision_params_m.get(pair.vision_name)
        cells = []
        for m in metrics:
            r = pair.report.metrics[m]
            cells.append(f"{r.best_score:.3f} {_interval(r.max_interval)}")
        table.add_row(pair.vision_name, "?" if params is None else f"{params:,.0f}M", pair.text_name, *cells)
    return table


def render_align(run: Any, console: Optional[Console] = None, *, heatmap_metric: Optional[str] = None) -> None:
    """Print the alignment report of an `AlignRun`: table, terminal heatmaps, scaling table, file locations."""
    console = console or Console()
    s = run.settings
    n = run.dataset["rows"]
    console.print(f"[bold]alignment[/] on {run.dataset['name']} (N={n}), k={s.k}, clip quantile {s.clip_quantile}, "
                  f"{s.permutations} permutations, {s.subsamples} subsamples of {int(s.subsample_fraction * 100)}%, seed {s.seed}")
    console.print(align_table(run.pairs, title="best layer pair per metric (max over all layer pairs)"))
    console.print("calibrated = (best - null max mean) / (1 - null max mean): 0 at chance for the max over all layer pairs, 1 = perfect. "
                  "p: permutation test of the max over layer pairs. Interval: subsamples without replacement.", style="dim")
    metric = heatmap_metric or s.metrics[0]
    for pair in run.pairs:
        m = pair.report.metrics[metric]
        console.print(heatmap_text(m.matrix, title=f"{metric}: {pair.vision_name} (rows) x {pair.text_name} (columns), ★ = best",
                                   row_labels=pair.vision.layers, col_labels=pair.text.layers, best=m.best_pair))
    if len({p.vision_name for p in run.pairs}) > 1:
        console.print(scaling_table(run))
    if run.results_path is not None:
        console.print(f"results: {run.results_path}", highlight=False, soft_wrap=True)
        console.print(f"heatmaps: {run.results_path.parent}/*.png", highlight=False, soft_wrap=True)


def _pct(x: Optional[float]) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}"


def linear_task_table(task: Any) -> Table:
    """Per-layer table of one `probe.runs.linear.LinearTask`, each figure beside its control; best layer starred."""
    table = Table(title=f"{task.name} ({task.kind}); best layer by validation: {task.best_state}", title_justify="left")
    table.add_column("layer", justify="right")
    if task.kind == "labels":
        cols = ("test acc %", "shuffled-label acc %", "majority %", "balanced acc %", "macro-F1 %", "C")
    elif task.kind == "words":
        cols = ("mean AP %", "shuffled AP %", "base rate %", "macro AUROC", "shuffled AUROC", "alpha")
    else:
        cols = ("R² %", "shuffled R² %", "top-1 %", "shuffled top-1 %", "chance top-1 %", "top-5 %", "chance top-5 %", "alpha")
    for c in cols:
        table.add_column(c, justify="right")
    for entry, state in zip(task.sweep.layers, task.hidden_states):
        r = entry.result
        mark = "★ " if entry.layer == task.sweep.best_layer else ""
        if task.kind == "labels":
            cells = (_pct(r.probe.accuracy), _pct(r.control.accuracy), _pct(r.majority_rate), _pct(r.probe.balanced_accuracy),
                     _pct(r.probe.macro_f1), f"{r.probe.chosen_c:.0e}")
        elif task.kind == "words":
            cells = (_pct(r.probe.macro_average_precision), _pct(r.control.macro_average_precision), _pct(r.probe.macro_base_rate),
                     _fmt(r.probe.macro_auroc), _fmt(r.control.macro_auroc), f"{r.probe.chosen_alpha:.0e}")
        else:
            cells = (_pct(r.probe.r2), _pct(r.control.r2), _pct(r.probe.top1), _pct(r.control.top1), _pct(r.chance_top1),
                     _pct(r.probe.top5), _pct(r.chance_top5), f"{r.probe.chosen_alpha:.0e}")
        table.add_row(f"{mark}{state}", *cells, style="bold" if mark else None)
    return table


def render_linear(run: Any, console: Optional[Console] = None) -> None:
    """Print the per-layer tables of a `LinearRun` and where the results were written."""
    console = console or Console()
    console.print(f"[bold]linear probes[/] of {run.vision.key['model']['name']} on {run.dataset['name']} (N={run.dataset['rows']}), seed {run.settings.seed}")
    for task in run.tasks:
        console.print(linear_task_table(task))
    console.print("The best layer is chosen on validation data, so its test figures are not selected on the test split. "
                  "Controls: the same procedure on shuffled labels / shuffled image-caption pairs.", style="dim")
    if run.results_path is not None:
        console.print(f"results: {run.results_path}", highlight=False, soft_wrap=True)


def demo_table(summary: dict[str, Any]) -> Table:
    """Trained model beside its random-init control for every alignment metric and probe, with chance."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    visions: list[str] = []
    for r in summary["alignment"]:
        visions += [r["vision"]] if r["vision"] not in visions else []
        rows.setdefault((f"align {r['metric']}", r["text"]), {})[r["vision"]] = (r["best"], r["calibrated"], r["p_value"], r["chance"])
    for r in summary["linear"]:
        visions += [r["vision"]] if r["vision"] not in visions else []
        rows.setdefault((f"linear {r['task']}: {r['figure']}", ""), {})[r["vision"]] = (r["value"], r["control"], None, r["chance"])
    table = Table(title="trained without text vs random-init control", title_justify="left")
    table.add_column("score")
    table.add_column("text model")
    for v in visions:
        table.add_column(v, justify="right")
    table.add_column("chance", justify="right")
    for (score, text), cells in rows.items():
        out = []
        chance = None
        for v in visions:
            if v not in cells:
                out.append("-")
                continue
            value, second, p, chance = cells[v]
            if score.startswith("align"):
                out.append(f"{value:.3f} (cal {_fmt(second)}, p {_p(p)})")
            else:
                out.append(f"{value:.3f} (control {_fmt(second)})")
        table.add_row(score, text, *out, _fmt(chance))
    return table


def render_demo(run: Any, console: Optional[Console] = None) -> None:
    """The demo report: the alignment report, the linear tables, and the trained-vs-control summary last."""
    console = console or Console()
    render_align(run.align, console)
    for lin in run.linear.values():
        render_linear(lin, console)
    console.rule("summary")
    console.print(demo_table(run.summary))
    console.print("align: best score over all layer pairs (cal = calibrated against the permutation null of that max; chance for "
                  "kNN = k/(N-1)). linear: best layer chosen on validation; control = shuffled labels / pairs; chance = "
                  "majority class, word base rate, 5/N_test.", style="dim")
    if run.results_path is not None:
        console.print(f"demo results: {run.results_path}", highlight=False, soft_wrap=True)
