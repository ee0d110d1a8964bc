"""Where two models agree: one pair's per-row agreement from a run's rows file, explained at a terminal.

`explain(run, vision=, text=, metric=, top=)` reads the rows file of `run` (`probe.report.rows`) and returns an
`Explanation` of one (vision, text) pair at one metric's best layer pair:

- the `top` rows with the highest and with the lowest agreement (`probe.report.rows.extremes`), each with the
  captions of its first NEIGHBOURS_SHOWN nearest rows in the vision space and in the text space;
- the mean agreement per value of each label field, with a 95% percentile bootstrap interval over the rows of
  that value (BOOTSTRAP_RESAMPLES resamples, seed BOOTSTRAP_SEED), beside the pair's chance level;
- Spearman's rho between a row's agreement and its caption's length in words, with a two-sided permutation
  p-value (PERMUTATIONS shuffles of the lengths, seed PERMUTATION_SEED; rank ties get their average rank).

`render_explanation` prints it with rich in the house style of `probe.report.terminal`, every cell whole at
80 columns. Nothing here needs the dataset, the models or torch: the rows file holds all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from probe.errors import InputError
from probe.report.numbers import fmt_interval, fmt_num, fmt_p
from probe.report.rows import PairRows, RowsFile, extremes, read_rows
from probe.report.terminal import add_column, house_table

DEFAULT_METRIC = "mutual_knn"
DEFAULT_TOP = 5
NEIGHBOURS_SHOWN = 3
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
PERMUTATIONS = 1000
PERMUTATION_SEED = 0
# A label value with fewer rows than MIN_GROUP_ROWS is pooled with the other small ones (a mean of 1 row is
# noise at the top or bottom of a table). A field with more groups than MAX_GROUPS shows its MAX_GROUPS // 2
# highest and lowest (the rest are counted); a field whose every row has its own value (an id) is left out.
MIN_GROUP_ROWS = 5
MAX_GROUPS = 12
# Captions are shortened at a space to these many characters ("..." marks the cut): the row's own, a neighbour's.
CAPTION_CHARS = 90
NEIGHBOUR_CHARS = 40
# Random numbers are drawn in blocks of at most this many values.
BLOCK_VALUES = 1 << 22


@dataclass(frozen=True)
class ExplainedRow:
    """One row of the pair: its number, id, caption and agreement, and the captions of its first nearest rows
    in each space (`vision_neighbours`, `text_neighbours`: (caption, also among the other space's k nearest))."""

    row: int
    id: str
    caption: str
    agreement: float
    vision_neighbours: list[tuple[str, bool]]
    text_neighbours: list[tuple[str, bool]]


@dataclass(frozen=True)
class GroupAgreement:
    """The rows of one value of a label field: how many, their mean agreement and its 95% bootstrap interval
    (None for a single row)."""

    value: str
    rows: int
    mean: float
    interval: Optional[tuple[float, float]]


@dataclass(frozen=True)
class LabelAgreement:
    """Agreement per value of the label field `field`, sorted by mean (highest first): `groups` as shown (all,
    or the highest and lowest MAX_GROUPS // 2), `hidden`, how many groups in between are not shown, and
    `pooled`, the rows of the values with fewer than MIN_GROUP_ROWS rows each as one group (its `value`: how
    many values; None when there are none)."""

    field: str
    groups: list[GroupAgreement]
    hidden: int
    pooled: Optional[GroupAgreement]


@dataclass(frozen=True)
class LengthCorrelation:
    """Spearman's rho between agreement and caption length in words over `rows` rows, and its two-sided
    permutation p-value over `permutations` shuffles; both None when either is constant."""

    rho: Optional[float]
    p_value: Optional[float]
    rows: int
    permutations: int


@dataclass(frozen=True)
class Explanation:
    """Where one (vision, text) pair agrees at one metric's best layer pair (hidden states `vision_state`,
    `text_state`): its `score`, the mean of its N row values (`row_mean`, equal to it), chance (None when not
    exact), the `top` and `bottom` rows, agreement per label value, and its correlation with caption length."""

    path: Path
    dataset: str
    vision: str
    text: str
    role: str
    metric: str
    vision_state: int
    text_state: int
    rows: int
    k: int
    score: float
    row_mean: float
    chance: Optional[float]
    top: list[ExplainedRow]
    bottom: list[ExplainedRow]
    labels: list[LabelAgreement]
    length: LengthCorrelation


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..N of `values` (float64 [N]), tied values sharing the mean of their ranks: [3, 1, 3] -> [2.5, 1, 2.5]."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(values)])
    mean_rank = starts + (counts + 1) / 2.0  # the 1-based ranks starts+1 .. starts+counts, averaged
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, counts)
    return ranks


def _centred_unit(values: np.ndarray) -> Optional[np.ndarray]:
    """`values` minus their mean, over its norm; None when they are constant."""
    centred = values - values.mean()
    norm = math.sqrt(float(centred @ centred))
    return None if norm <= 1e-12 * max(1.0, float(np.abs(values).max())) else centred / norm


def spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Spearman's rho of two equal-length sequences: the Pearson correlation of their average ranks; None when
    either is constant (or has fewer than 2 values)."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    a, b = _centred_unit(average_ranks(x)), _centred_unit(average_ranks(y))
    return None if a is None or b is None else float(np.clip(a @ b, -1.0, 1.0))


def spearman_test(
    x: Sequence[float], y: Sequence[float], *, permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED
) -> LengthCorrelation:
    """Spearman's rho of `x` and `y` and its two-sided permutation p-value: (1 + the shuffles of `y` whose
    |rho| is at least the observed one) / (1 + `permutations`), shuffles drawn with `seed`."""
    rho = spearman(x, y)
    if rho is None:
        return LengthCorrelation(None, None, len(x), permutations)
    a, b = _centred_unit(average_ranks(x)), _centred_unit(average_ranks(y))
    rng = np.random.default_rng(seed)
    block = max(1, BLOCK_VALUES // len(b))
    extreme = 0
    for start in range(0, permutations, block):
        shuffled = rng.permuted(np.tile(b, (min(block, permutations - start), 1)), axis=1)
        extreme += int((np.abs(shuffled @ a) >= abs(rho) - 1e-12).sum())
    return LengthCorrelation(rho, (1 + extreme) / (1 + permutations), len(x), permutations)


def bootstrap_mean_interval(
    values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> Optional[tuple[float, float]]:
    """The 95% percentile bootstrap interval of the mean of `values`: the 2.5% and 97.5% quantiles of the means
    of `resamples` resamples with replacement, drawn with `seed`; None for fewer than 2 values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    block = max(1, BLOCK_VALUES // len(values))
    means = np.concatenate(
        [
            values[rng.integers(0, len(values), size=(min(block, resamples - start), len(values)))].mean(axis=1)
            for start in range(0, resamples, block)
        ]
    )
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def _pairs_line(rows: RowsFile) -> str:
    """Every pair of `rows` as 'vision vs text (role)', for a message."""
    pairs = dict.fromkeys((p.vision, p.text, p.role) for p in rows.pairs)
    return "; ".join(f"{v} vs {t} ({role})" for v, t, role in pairs)


def choose_pair(
    rows: RowsFile, *, vision: Optional[str] = None, text: Optional[str] = None, metric: str = DEFAULT_METRIC
) -> PairRows:
    """The pair of `rows` to explain at `metric`: the first whose names match `vision` and `text` (either may be
    None), models before controls and ceilings. InputError (one line, listing what the file holds) when no pair
    matches or the pair lacks `metric`."""
    matching = rows.find(vision=vision, text=text)
    if not matching:
        asked = " ".join(f"{name}={value}" for name, value in (("vision", vision), ("text", text)) if value)
        raise InputError(f"{rows.path} has no pair {asked}; its pairs: {_pairs_line(rows)}")
    order = {"model": 0, "control": 1, "ceiling": 2}
    first = min(matching, key=lambda p: order.get(p.role, len(order)))
    chosen = [p for p in matching if (p.vision, p.text) == (first.vision, first.text)]
    for pair in chosen:
        if pair.metric == metric:
            return pair
    raise InputError(
        f"metric={metric} is not in {rows.path} for {first.vision} vs {first.text}; "
        f"it has {', '.join(p.metric for p in chosen)}"
    )


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a space to at most `limit` characters with "..." when longer."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "..."


def _explained_row(rows: RowsFile, pair: PairRows, row: int) -> ExplainedRow:
    vision_all, text_all = set(pair.vision_neighbours[row].tolist()), set(pair.text_neighbours[row].tolist())

    def shown(lists: np.ndarray, other: set[int]) -> list[tuple[str, bool]]:
        return [(rows.captions[int(n)], int(n) in other) for n in lists[row][:NEIGHBOURS_SHOWN]]

    return ExplainedRow(
        row=row,
        id=rows.ids[row],
        caption=rows.captions[row],
        agreement=float(pair.scores[row]),
        vision_neighbours=shown(pair.vision_neighbours, text_all),
        text_neighbours=shown(pair.text_neighbours, vision_all),
    )


def _group(value: str, scores: np.ndarray) -> GroupAgreement:
    return GroupAgreement(value, len(scores), float(scores.mean()), bootstrap_mean_interval(scores))


def label_agreement(scores: np.ndarray, values: Sequence[str], *, field: str) -> Optional[LabelAgreement]:
    """Mean agreement `scores` [N] per value of one label field (`values` [N]), highest first, each with its
    bootstrap interval, the values with fewer than MIN_GROUP_ROWS rows pooled; None for a field that groups
    nothing (every row its own value, or one value for all)."""
    names, inverse = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    if len(names) in (1, len(values)):
        return None
    counts = np.bincount(inverse, minlength=len(names))
    groups = [_group(str(name), scores[inverse == i]) for i, name in enumerate(names) if counts[i] >= MIN_GROUP_ROWS]
    groups.sort(key=lambda g: (-g.mean, g.value))
    small = counts < MIN_GROUP_ROWS
    count = int(small.sum())
    pooled = _group(f"{count} value{'s' * (count != 1)}", scores[small[inverse]]) if count else None
    hidden = max(0, len(groups) - MAX_GROUPS)
    if hidden:
        groups = groups[: MAX_GROUPS // 2] + groups[-(MAX_GROUPS // 2) :]
    return LabelAgreement(field, groups, hidden, pooled)


def explain_rows(
    rows: RowsFile,
    *,
    vision: Optional[str] = None,
    text: Optional[str] = None,
    metric: str = DEFAULT_METRIC,
    top: int = DEFAULT_TOP,
) -> Explanation:
    """The `Explanation` of one pair of a rows file already read (`read_rows`); see `explain`."""
    if top < 1:
        raise InputError(f"top={top}: give the number of rows to show at each end, 1 or more")
    pair = choose_pair(rows, vision=vision, text=text, metric=metric)
    scores = np.asarray(pair.scores, dtype=np.float64)
    highest, lowest = extremes(scores, min(top, len(scores)))
    labels = [label_agreement(scores, values, field=field) for field, values in rows.labels.items()]
    words = [len(caption.split()) for caption in rows.captions]
    return Explanation(
        path=rows.path,
        dataset=rows.dataset,
        vision=pair.vision,
        text=pair.text,
        role=pair.role,
        metric=pair.metric,
        vision_state=pair.vision_state,
        text_state=pair.text_state,
        rows=len(scores),
        k=int(pair.vision_neighbours.shape[1]),
        score=pair.score,
        row_mean=float(scores.mean()),
        chance=pair.chance,
        top=[_explained_row(rows, pair, r) for r in highest],
        bottom=[_explained_row(rows, pair, r) for r in lowest],
        labels=[label for label in labels if label is not None],
        length=spearman_test(scores, words),
    )


def explain(
    run: Any,
    *,
    vision: Optional[str] = None,
    text: Optional[str] = None,
    metric: str = DEFAULT_METRIC,
    top: int = DEFAULT_TOP,
) -> Explanation:
    """Where `vision` and `text` agree in `run` (a run folder, a demo or study folder holding one align run, a
    results JSON or a rows.h5; see `probe.report.rows.rows_path`) at `metric`'s best layer pair: the `top` most
    and least agreeing rows with their nearest rows in each space, agreement per label value, and its
    correlation with caption length. Default pair: the first model pair (controls and ceilings by name).
    InputError (one line) for a run without a rows file, an unknown pair or metric."""
    return explain_rows(read_rows(run), vision=vision, text=text, metric=metric, top=top)


def _neighbour_line(side: str, neighbours: list[tuple[str, bool]]) -> str:
    parts = [escape(shorten(caption, NEIGHBOUR_CHARS)) + (" *" if shared else "") for caption, shared in neighbours]
    return f"[dim]{side}:[/] " + " | ".join(parts)


def rows_table(title: str, explained: list[ExplainedRow], *, metric: str) -> Table:
    """The rows `explained`: id, agreement, caption, and beneath it its nearest rows' captions in each space."""
    table = house_table(title)
    add_column(table, "id", kind="name")
    add_column(table, metric.replace("_", "_\n"), kind="number")
    add_column(table, "caption; v: and t: its nearest rows in each space", kind="words")
    for r in explained:
        cell = "\n".join(
            [
                f"[bold]{escape(shorten(r.caption, CAPTION_CHARS))}[/]",
                _neighbour_line("v", r.vision_neighbours),
                _neighbour_line("t", r.text_neighbours),
            ]
        )
        table.add_row(escape(r.id), fmt_num(r.agreement), cell)
    return table


def labels_table(label: LabelAgreement, *, metric: str, chance: Optional[float]) -> Table:
    """Agreement per value of one label field: rows, mean, its 95% bootstrap interval, chance."""
    table = house_table(f"{metric} per {label.field}, highest mean first")
    add_column(table, label.field, kind="words")
    for header in ("rows", "mean", "95% interval", "chance"):
        add_column(table, header, kind="number")
    for i, g in enumerate(label.groups):
        if label.hidden and i == len(label.groups) // 2:
            table.add_row(f"[dim]({label.hidden} more)[/]", "", "", "", "")
        table.add_row(escape(g.value), str(g.rows), fmt_num(g.mean), fmt_interval(g.interval), fmt_num(chance))
    g = label.pooled
    if g is not None:
        cells = (str(g.rows), fmt_num(g.mean), fmt_interval(g.interval), fmt_num(chance))
        table.add_row(f"[dim]({g.value} with under {MIN_GROUP_ROWS} rows)[/]", *cells)
    return table


def render_explanation(explanation: Explanation, console: Optional[Console] = None) -> None:
    """Print `explanation`: a header (pair, metric, score at which hidden states, chance), the most and least
    agreeing rows, agreement per label value, and the correlation with caption length."""
    e = explanation
    console = console or Console()
    role = "" if e.role == "model" else f" ({e.role})"
    console.print(
        f"[bold]{escape(e.vision)} vs {escape(e.text)}[/]{escape(role)} on {escape(e.dataset)} (N={e.rows}, k={e.k})",
        highlight=False,
    )
    same = math.isclose(e.row_mean, e.score, rel_tol=1e-6, abs_tol=1e-9)
    mean = "equals the score" if same else f"is {fmt_num(e.row_mean)}, not the score: the file is inconsistent"
    console.print(
        f"{e.metric} {fmt_num(e.score)} at hidden state {e.vision_state} of {escape(e.vision)} and "
        f"{e.text_state} of {escape(e.text)}, its best layer pair; chance {fmt_num(e.chance)}. The mean of "
        f"the {e.rows} rows' agreement {mean}.",
        highlight=False,
    )
    count = len(e.top)
    console.print(rows_table(f"the {count} rows that agree most", e.top, metric=e.metric))
    console.print(rows_table(f"the {count} rows that agree least", e.bottom, metric=e.metric))
    console.print(
        f"v: / t: the captions of a row's first {NEIGHBOURS_SHOWN} of its {e.k} nearest rows in the space of "
        f"{escape(e.vision)} / {escape(e.text)} at those hidden states; * = also among its {e.k} nearest rows "
        "in the other space.",
        style="dim",
        highlight=False,
    )
    for label in e.labels:
        console.print(labels_table(label, metric=e.metric, chance=e.chance))
    if e.labels:
        console.print(
            f"95% interval: percentile bootstrap of the group's mean over its rows ({BOOTSTRAP_RESAMPLES} "
            f"resamples, seed {BOOTSTRAP_SEED}). chance: the pair's chance level, the same for every group.",
            style="dim",
        )
    length = e.length
    if length.rho is None:
        console.print("caption length: every caption has the same number of words, or every row the same value.")
    else:
        console.print(
            f"caption length in words vs {e.metric}: Spearman rho {fmt_num(length.rho)}, "
            f"p {fmt_p(length.p_value, permutations=length.permutations)} (two-sided permutation test, "
            f"{length.permutations} shuffles, seed {PERMUTATION_SEED}; {length.rows} rows).",
            highlight=False,
        )
    console.print(f"rows file: {e.path}", style="dim", highlight=False, soft_wrap=True)
