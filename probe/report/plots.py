"""Layer x layer heatmaps: a PNG file (matplotlib, Agg) and a rich renderable for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np


def _viridis(values: np.ndarray) -> np.ndarray:
    """[...] values in [0, 1] -> [..., 3] uint8 RGB."""
    from matplotlib import colormaps

    return (np.asarray(colormaps["viridis"](np.clip(values, 0, 1)))[..., :3] * 255).astype(np.uint8)


def draw_heatmap(
    ax: Any,
    matrix: np.ndarray,
    *,
    best: Optional[tuple[int, int]] = None,
    xticks: Optional[Sequence[int]] = None,
    yticks: Optional[Sequence[int]] = None,
    norm: Any = None,
    tick_count: int = 12,
    tick_fontsize: Optional[float] = None,
    star_size: float = 12,
) -> Any:
    """Draw `matrix` [rows, cols] on the matplotlib axes `ax`: viridis, rows bottom-up (row 0, the first vision
    hidden state, at the bottom), on the colour scale `norm` (default: the matrix's own range), `best` (row, col)
    starred. `xticks` [cols] / `yticks` [rows] label the columns / rows, every (size // `tick_count`)-th one.
    Returns the image, for a colour bar. The one heatmap drawing: the PNG files and the report's figures."""
    image = ax.imshow(matrix, origin="lower", aspect="auto", cmap="viridis", norm=norm, interpolation="nearest")
    if best is not None:
        ax.plot(best[1], best[0], marker="*", color="red", markersize=star_size, markeredgecolor="white")
    font = {} if tick_fontsize is None else {"fontsize": tick_fontsize}
    for ticks, setter, size in ((xticks, ax.set_xticks, matrix.shape[1]), (yticks, ax.set_yticks, matrix.shape[0])):
        if ticks is not None:
            step = max(1, size // tick_count)
            setter(range(0, size, step), [str(t) for t in list(ticks)[::step]], **font)
    return image


def heatmap_png(
    matrix: np.ndarray,
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    xticks: Optional[Sequence[int]] = None,
    yticks: Optional[Sequence[int]] = None,
    best: Optional[tuple[int, int]] = None,
    chance: Optional[float] = None,
) -> Path:
    """Save `matrix` [Lv, Lt] as a heatmap PNG (rows = y = vision layers); mark `best` (row, col) with a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.22 * m.shape[1] + 3.0), max(4.5, 0.22 * m.shape[0] + 2.0)), dpi=120)
    im = draw_heatmap(ax, m, best=best, xticks=xticks, yticks=yticks)
    cb = fig.colorbar(im, ax=ax)
    if chance is not None and np.nanmin(m) <= chance <= np.nanmax(m):  # else the title states it
        cb.ax.axhline(chance, color="red", linewidth=1.5)
        cb.ax.text(1.05, chance, " chance", color="red", transform=cb.ax.get_yaxis_transform(), va="center", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG under a temporary name, then rename it into place (a kill never leaves
    a truncated file at `path`), and close it."""
    import matplotlib.pyplot as plt

    from probe.errors import write_atomic

    try:
        return write_atomic(Path(path), lambda tmp: fig.savefig(tmp, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)


def sizes_png(rows: Sequence, path: Path, *, title: str) -> Path:
    """Raw (left) and calibrated (right) score of each metric against N, log x axis, with the chance level of
    the raw score dashed; `rows` are `probe.runs.sizes.SizeRow`s of one model pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (raw, cal) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    for metric in dict.fromkeys(r.metric for r in rows):
        mine = sorted((r for r in rows if r.metric == metric), key=lambda r: r.n)
        n = [r.n for r in mine]
        (line,) = raw.plot(n, [r.best for r in mine], marker="o", label=metric)
        if all(r.chance is not None for r in mine):
            raw.plot(n, [r.chance for r in mine], linestyle="--", color=line.get_color(), alpha=0.6)
        if all(r.calibrated is not None for r in mine):
            cal.plot(n, [r.calibrated for r in mine], marker="o", color=line.get_color(), label=metric)
    for ax, label in ((raw, "raw max over layer pairs (dashed: chance)"), (cal, "calibrated (compare this across N)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (rows)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    cal.axhline(0, color="grey", linewidth=0.8)
    raw.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


_SHADES = " ░▒▓█"


def heatmap_text(
    matrix: np.ndarray,
    *,
    title: str,
    row_labels: Sequence[int],
    col_labels: Sequence[int],
    best: Optional[tuple[int, int]] = None,
    colour: bool = True,
    width: Optional[int] = None,
):
    """A rich Text heatmap of `matrix` [rows, cols]: one 2-character cell per value, rows bottom-up (row 0 =
    first vision layer at the bottom, as in the PNG), with a legend of the value range.

    `colour`: viridis cells; without colour (piped output, NO_COLOR) cells are shades " ░▒▓█" from the
    minimum to the maximum, with the same legend. `width`: when the matrix would be wider, every other
    column (or every third, ...) is shown and the axis says so.
    """
    from rich.text import Text

    m = np.asarray(matrix, dtype=float)
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    scaled = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    rgb = _viridis(scaled)
    label_width = max(len(str(r)) for r in row_labels)
    step = 1
    if width is not None:
        while label_width + 1 + 2 * len(range(0, m.shape[1], step)) > width:
            step += 1
    shown = list(range(0, m.shape[1], step))
    if best is not None and best[1] not in shown:
        shown = sorted(set(shown) | {best[1]})
    out = Text(f"{title}\n", style="bold")
    for i in reversed(range(m.shape[0])):
        out.append(f"{row_labels[i]:>{label_width}} ")
        for j in shown:
            star = best is not None and (i, j) == tuple(best)
            if colour:
                r, g, b = rgb[i, j]
                out.append("★ " if star else "  ", style=f"white on rgb({r},{g},{b})")
            else:
                shade = _SHADES[min(len(_SHADES) - 1, int(scaled[i, j] * len(_SHADES)))]
                out.append("★ " if star else shade * 2)
        out.append("\n")
    tick = max(1, len(shown) // 8)
    axis = "".join(f"{str(col_labels[j]):<{2 * tick}}" for j in shown[::tick])
    out.append(" " * (label_width + 1) + axis.rstrip() + "\n")
    out.append(" " * (label_width + 1) + f"min {lo:.3f} ")
    for v in np.linspace(0, 1, 10 if colour else len(_SHADES)):
        if colour:
            r, g, b = _viridis(np.array([v]))[0]
            out.append("  ", style=f"on rgb({r},{g},{b})")
        else:
            out.append(_SHADES[min(len(_SHADES) - 1, int(v * len(_SHADES)))] * 2)
    out.append(f" max {hi:.3f}")
    if step > 1:
        out.append(f"\n{' ' * (label_width + 1)}(1 column in {step} shown, and the best)")
    return out
