"""The report's page: results tables and figures -> the text of report.md and of report.html.

`render_page(align=, probes=, records=, figures=, stamp=)` lays out the sections (alignment, the figures,
linear probes, provenance) once and writes them twice: as Markdown, figures linked as `figures/<name>.png`,
and as one self-contained HTML page, figures inlined as base64 PNG, inline CSS only (no script, no external
style, font or image). The tables are built here from the DataFrames of probe.report.tables (`load`,
`load_probes`) and the results records, their numbers in the convention of probe.report.numbers.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from probe.report.figures import Figure
from probe.report.gallery import GALLERY_CSS, Gallery
from probe.report.numbers import fmt_interval, fmt_num, fmt_p

Table = tuple[list[str], list[list[str]]]  # headers, rows of cell text


@dataclass(frozen=True)
class Page:
    """The report as text: `markdown` (report.md) and `html` (report.html)."""

    markdown: str
    html: str


# --- tables: one model of rows, rendered as Markdown and HTML ---------------------------------------------------


def alignment_table(align: Any) -> Table:
    """One line per (run, vision, text, metric): best, hidden states, chance, null, calibrated, interval, p."""
    headers = [
        "vision",
        "params (M)",
        "text",
        "metric",
        "N",
        "best",
        "states (v, t)",
        "chance",
        "null max",
        "calibrated",
        "interval of best",
        "p",
    ]
    rows = []
    for r in align.itertuples():
        params = (
            "control"
            if r.vision_control
            else ("–" if r.vision_params_m != r.vision_params_m else f"{r.vision_params_m:g}")
        )
        states = (
            "–"
            if r.best_vision_state is None or str(r.best_vision_state) == "<NA>"
            else f"{r.best_vision_state}, {r.best_text_state}"
        )
        permutations = None if str(r.permutations) == "<NA>" else int(r.permutations)
        p = None if r.p_value != r.p_value else float(r.p_value)
        rows.append(
            [
                str(r.vision),
                params,
                str(r.text),
                str(r.metric),
                str(r.n),
                fmt_num(r.best_score),
                states,
                fmt_num(r.chance),
                fmt_num(r.null_max_mean),
                fmt_num(r.calibrated),
                fmt_interval((r.ci_low, r.ci_high)),
                fmt_p(p, permutations=permutations),
            ]
        )
    return headers, rows


def probe_table(probes: Any) -> Table:
    """The best layer of every (run, vision, task): figure, value, control, chance, test rows."""
    headers = ["vision", "task", "figure", "hidden state", "value", "shuffled control", "chance", "chance is", "n_test"]
    best = probes[probes["best"]]
    rows = [
        [
            str(r.vision),
            str(r.task),
            str(r.figure),
            str(r.hidden_state),
            fmt_num(r.value),
            fmt_num(r.control),
            fmt_num(r.chance),
            str(r.chance_kind),
            str(r.n_test),
        ]
        for r in best.itertuples()
    ]
    return headers, rows


def picture_text_tables(frame: Any) -> list[tuple[str, str, Table]]:
    """Per (picture dataset, rendered dataset) of `frame` (probe.report.reading.picture_text): the two names and
    one line per (vision, text, metric) with the best score, calibrated score and chance on each, side by side."""
    headers = [
        "vision",
        "text",
        "metric",
        "N",
        "picture best",
        "picture calibrated",
        "picture chance",
        "rendered best",
        "rendered calibrated",
        "rendered chance",
    ]
    tables = []
    for (pictures, rendered), group in frame.groupby(["pictures", "rendered"], sort=False):
        rows = []
        for r in group.itertuples():
            n = str(r.n_pictures) if r.n_pictures == r.n_rendered else f"{r.n_pictures} / {r.n_rendered}"
            rows.append(
                [
                    str(r.vision),
                    str(r.text),
                    str(r.metric),
                    n,
                    fmt_num(r.best_pictures),
                    fmt_num(r.calibrated_pictures),
                    fmt_num(r.chance_pictures),
                    fmt_num(r.best_rendered),
                    fmt_num(r.calibrated_rendered),
                    fmt_num(r.chance_rendered),
                ]
            )
        tables.append((str(pictures), str(rendered), (headers, rows)))
    return tables


def filter_table(frame: Any) -> Table:
    """One line per (unfiltered checkpoint, dataset, text, metric) of `frame` (probe.report.reading.
    filter_effects), ordered by size: the unfiltered checkpoint's calibrated score, then per filtered training
    data (`light2b`, `heavy2b`) its difference from it, the paired interval and the verdict ("–" where that
    size has no such checkpoint)."""
    from probe.models.table import FILTERED_DATA

    wholes = list(dict.fromkeys(frame["full_data"]))
    whole = wholes[0] if len(wholes) == 1 else "unfiltered"
    present = set(frame["filtered_data"])
    datas = [d for d in FILTERED_DATA if d in present] + sorted(present - set(FILTERED_DATA))
    headers = [f"{whole} checkpoint", "dataset", "text", "metric", f"{whole} calibrated"]
    for data in datas:
        headers += [f"{data} − {whole}", "paired interval", "verdict"]
    rows = []
    for (full, dataset, text, metric), group in frame.groupby(["full", "dataset", "text", "metric"], sort=False):
        row = [str(full), str(dataset), str(text), str(metric), fmt_num(group["full_calibrated"].iloc[0])]
        for data in datas:
            mine = group[group["filtered_data"] == data]
            if mine.empty:
                row += ["–", "–", "–"]
                continue
            r = mine.iloc[0]
            interval = None if r.diff_low != r.diff_low else (r.diff_low, r.diff_high)
            row += [fmt_num(r.difference), fmt_interval(interval), str(r.verdict)]
        rows.append(row)
    return headers, rows


def provenance_tables(recs: Sequence[tuple[Path, dict[str, Any]]]) -> list[tuple[str, Table]]:
    """Runs (command, date, dataset + fingerprint, git revision), package versions (each version seen, with the
    runs that used it when they differ) and models (name, hub id, revision, where the weights came from), as
    recorded in the results files."""
    runs, models, seen = [], [], set()
    packages: dict[str, dict[str, list[str]]] = {}  # package -> version -> runs
    for path, rec in recs:
        prov = rec.get("provenance") or {}
        ds = rec.get("dataset") or {}
        for name, version in (prov.get("packages") or {}).items():
            packages.setdefault(name, {}).setdefault(str(version or "not installed"), []).append(path.stem)
        runs.append(
            [
                path.name,
                rec.get("command", ""),
                rec.get("created", ""),
                f"{ds.get('name')} (N={ds.get('rows')})",
                str(ds.get("fingerprint") or "–")[:16],
                str(prov.get("git_revision") or "–"),
            ]
        )
        for inp in rec.get("inputs") or []:
            identity = (inp.get("extraction") or {}).get("model_identity") or {}
            weights = identity.get("commit") or identity.get("package") or identity.get("weights") or "–"
            key = (inp.get("model"), inp.get("hub_id"), inp.get("revision"), str(weights))
            if key not in seen:
                seen.add(key)
                models.append(
                    [
                        str(inp.get("model")),
                        inp.get("modality", ""),
                        str(inp.get("hub_id") or "–"),
                        str(inp.get("revision") or "–"),
                        str(weights),
                    ]
                )
    package_rows = [
        [name, version, "all" if len(versions) == 1 else ", ".join(used)]
        for name, versions in sorted(packages.items())
        for version, used in versions.items()
    ]
    return [
        ("Runs", (["file", "command", "created", "dataset", "fingerprint", "git revision"], runs)),
        ("Packages", (["package", "version", "runs"], package_rows)),
        ("Models", (["model", "modality", "hub id", "revision", "weights"], models)),
    ]


def _md_table(table: Table) -> str:
    """`table` as a Markdown table, ending with a newline."""
    headers, rows = table

    def cell(s: Any) -> str:  # a pipe would end the cell, a newline the row
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _html_table(table: Table) -> str:
    """`table` as one HTML <table>, every cell escaped."""
    headers, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    """
body { font-family: sans-serif; margin: 2em auto; max-width: 1150px; color: #222; background: #fff; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { font-size: .85em; color: #555; }
"""
    + GALLERY_CSS
)


def _reading_sections(align: Any, records: Sequence[tuple[Path, dict[str, Any]]]) -> list[tuple[str, str, list[Any]]]:
    """The sections of probe.report.reading's comparisons, where the results hold any: one per picture dataset
    beside its rendered twin, and the text filter's effect per size."""
    from probe.report.reading import filter_effects, picture_text

    sections: list[tuple[str, str, list[Any]]] = []
    if not align.empty:
        for pictures, rendered, table in picture_text_tables(picture_text(align)):
            sections.append(
                (
                    f"Pictures vs rendered text: {pictures} and {rendered}",
                    f"The same rows, as pictures ({pictures}) and with each caption drawn as the image ({rendered}): "
                    "best score over layer pairs, calibrated score and chance on each. On rendered text, alignment "
                    "with a language model asks whether what the vision model reads carries the language model's "
                    "geometry.",
                    [table],
                )
            )
    effects = filter_effects(records)
    if not effects.empty:
        level = sorted({f"{c:.0%}" for c in effects["confidence"] if c == c}) or ["–"]
        sections.append(
            (
                "The text filter's effect, per size",
                "Each checkpoint trained on text-filtered data beside the checkpoint of the same size trained on "
                "the whole data, on the same rows and text model: calibrated scores, the difference (filtered − "
                f"unfiltered) and its paired {'/'.join(level)} jackknife interval over the subsamples both "
                "share (computed as a model against its control); verdict: the interval above 0, below 0, or "
                "overlapping 0. Not comparable: other rows or settings. –: no such checkpoint at that size.",
                [filter_table(effects)],
            )
        )
    return sections


def render_page(
    *,
    align: Any,
    probes: Any,
    records: Sequence[tuple[Path, dict[str, Any]]],
    figures: Sequence[Figure],
    stamp: str,
    gallery: Optional[Gallery] = None,
) -> Page:
    """The report of the alignment DataFrame `align` and the probe DataFrame `probes` (either may be empty), the
    results `records` (path, record) they came from and their `figures`, generated at `stamp` (an ISO time);
    `gallery` (probe.report.gallery) goes after the alignment figures, its HTML and Markdown placed as they are."""
    sections: list[tuple[str, str, list[Any]]] = []  # (title, intro, [Table | Figure | Gallery])
    if not align.empty:
        sections.append(
            (
                "Alignment",
                "Best score over all (vision, text) hidden-state pairs, beside its chance level and "
                "the permutation null of that max; calibrated = (best - null) / (1 - null). Hidden states: 0 = "
                "embeddings.",
                [alignment_table(align)],
            )
        )
    sections += _reading_sections(align, records)
    sections += [(f.title, "", [f]) for f in figures if f.name != "probes"]  # the caption goes under the figure
    if gallery is not None:
        sections.append((gallery.title, gallery.intro, [gallery]))
    if not probes.empty:
        sections.append(
            (
                "Linear probes",
                "The layer chosen on validation data, scored on test rows.",
                [probe_table(probes), *[f for f in figures if f.name == "probes"]],
            )
        )
    sections += [(f"Provenance: {name.lower()}", "", [table]) for name, table in provenance_tables(records)]

    sources = ", ".join(p.name for p, _ in records)
    md = [f"# probe report\n\nGenerated {stamp} from {len(records)} results files: {sources}.\n\n"]
    page = [
        f"<h1>probe report</h1><p class=note>Generated {html.escape(stamp)} from {len(records)} results files: "
        f"{html.escape(sources)}.</p>"
    ]
    for title, intro, items in sections:
        md.append(f"## {title}\n\n" + (f"{intro}\n\n" if intro else ""))
        anchor = ' id="gallery"' if any(isinstance(item, Gallery) for item in items) else ""
        page.append(
            f"<h2{anchor}>{html.escape(title)}</h2>" + (f"<p class=note>{html.escape(intro)}</p>" if intro else "")
        )
        for item in items:
            if isinstance(item, Gallery):
                md.append(item.markdown)
                page.append(item.html)
            elif isinstance(item, Figure):
                md.append(f"![{item.title}](figures/{item.name}.png)\n\n")
                data = base64.b64encode(item.png).decode("ascii")
                page.append(
                    f'<figure><img alt="{html.escape(item.title)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(item.caption)}</figcaption></figure>"
                )
            else:
                md.append(_md_table(item) + "\n")
                page.append(_html_table(item))
    document = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>probe report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(page)}</body></html>\n"
    )
    return Page(markdown="".join(md), html=document)
