"""Results as data: results JSON files (probe.results) -> pandas DataFrames, one row per score.

`load(paths)`: alignment, one row per (run, vision, text, metric). `load_probes(paths)`: linear probes, one row
per (run, vision, task, layer). Columns: docs/results.md ("Results as tables"). `records(paths)` gives the
checked records themselves (the report needs the full layer x layer matrices, which the tables leave out).

Model facts (family, parameters, source) come from the registry (probe.models.names), never from the
network: a name that is neither registered nor an existing folder gets NaN. This lives in `report`, not in
`probe.results`, because the registry sits above results.py in the layering (probe.models imports it).
pandas is imported inside the functions only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from probe.results import find_results, read_results

NAN = float("nan")

# Column order of the alignment table (docs/results.md documents each).
ALIGN_COLUMNS = (
    "run",
    "command",
    "created",
    "dataset",
    "dataset_fingerprint",
    "n",
    "k",
    "vision",
    "vision_family",
    "vision_params_m",
    "vision_revision",
    "vision_control",
    "text",
    "text_family",
    "text_params_m",
    "text_revision",
    "metric",
    "best_score",
    "best_vision_state",
    "best_text_state",
    "vision_depth",
    "text_depth",
    "chance",
    "chance_source",
    "null_max_mean",
    "null_max_std",
    "calibrated",
    "p_value",
    "z_score",
    "ci_low",
    "ci_high",
    "permutations",
    "subsamples",
    "seed",
    "path",
    "role",
    "best_control",
    "control_calibrated",
    "control_difference",
    "control_diff_low",
    "control_diff_high",
    "above_control",
)
PROBE_COLUMNS = (
    "run",
    "created",
    "dataset",
    "dataset_fingerprint",
    "n",
    "vision",
    "vision_family",
    "vision_params_m",
    "vision_revision",
    "vision_control",
    "task",
    "kind",
    "layer",
    "hidden_state",
    "depth",
    "best",
    "figure",
    "value",
    "control",
    "chance",
    "chance_kind",
    "n_test",
    "selection_metric",
    "selection_score",
    "seed",
    "path",
)

# Per probe kind: the headline figure, where its value sits in the layer's `probe`/`control` dicts, and its
# chance level (a key of the layer record or of its `probe` dict) with what that chance is. Same rule as the
# demo's summary table (probe.runs.demo.summarise).
PROBE_FIGURES = {
    "labels": ("accuracy", "accuracy", ("layer", "majority_rate"), "majority class"),
    "words": ("mean average precision", "macro_average_precision", ("probe", "macro_base_rate"), "word base rate"),
    "crossmodal": ("caption retrieval top-5", "top5", ("layer", "chance_top5"), "5/N_test"),
}


# The JSON's chance_source "null" reads as missing in CSV readers (pandas' default NA strings): spelled out.
_CHANCE_SOURCES = {"null": "permutation null"}


@dataclass(frozen=True)
class ModelFacts:
    """What the registry says about a model name (NaN/None where it does not know it)."""

    family: Optional[str]
    params_m: float
    revision: Optional[str]
    control: bool


@lru_cache(maxsize=None)
def model_facts(name: str) -> ModelFacts:
    """Registry facts for `name`. Only registered names, `random-init:` twins of them, and existing folders are
    resolved (an unregistered hub id would need the network): anything else gets NaN/None."""
    from probe.errors import ProbeError
    from probe.models.names import is_control, registered, resolve_model, split_twin

    control = is_control(name)
    _, base = split_twin(name)
    if registered(base) is None and not Path(base).expanduser().is_dir():
        return ModelFacts(None, NAN, None, control)
    try:
        spec = resolve_model(name)
    except (ProbeError, OSError, ValueError):
        return ModelFacts(None, NAN, None, control)
    params = NAN if spec.params_m is None else float(spec.params_m)
    return ModelFacts(spec.family or None, params, spec.revision, control)


def _num(value: Any) -> float:
    """A JSON number -> float; None (written for non-finite values) -> NaN."""
    return NAN if value is None else float(value)


def _resolve_linked(link: Optional[str], demo_path: Path) -> Optional[Path]:
    """A path a demo file recorded: the same file name beside the demo file (the folder as it is now, maybe
    moved or copied), else the path as written."""
    if not link:
        return None
    p = Path(link)
    for candidate in (demo_path.parent / p.name, p):
        if candidate.is_file():
            return candidate.resolve()
    return None


def records(paths: Any) -> list[tuple[Path, dict[str, Any]]]:
    """(path, record) of every results file under `paths` (probe.results.find_results), each checked by
    probe.results.read_results. A demo file brings in the align and linear files it names (found beside it
    or as written), each once; a demo file whose files are gone keeps only its own summary."""
    out: dict[Path, dict[str, Any]] = {}
    for path in find_results(paths):
        record = read_results(path)
        out.setdefault(path, record)
        if record["command"] == "demo":
            res = record.get("results", {})
            for link in [res.get("align_results"), *dict(res.get("linear_results") or {}).values()]:
                linked = _resolve_linked(link, path)
                if linked is not None and linked not in out:
                    out[linked] = read_results(linked)
    return sorted(out.items())


def _run_fields(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    dataset = record.get("dataset") or {}
    return {
        "run": path.stem,
        "created": record.get("created"),
        "dataset": dataset.get("name"),
        "dataset_fingerprint": dataset.get("fingerprint"),
        "n": dataset.get("rows"),
        "path": str(path),
    }


def _model_fields(prefix: str, name: str) -> dict[str, Any]:
    facts = model_facts(name)
    row = {
        prefix: name,
        f"{prefix}_family": facts.family,
        f"{prefix}_params_m": facts.params_m,
        f"{prefix}_revision": facts.revision,
    }
    if prefix == "vision":
        row["vision_control"] = facts.control
    return row


def _depth(state: Optional[int], layers: list[int], dropped: list[int]) -> float:
    """Relative depth of hidden state `state`: state / the last hidden state stored (0 = embeddings, 1 = last)."""
    last = max([*layers, *dropped], default=0)
    return NAN if state is None or last == 0 else state / last


def _control_fields(comparison: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The columns comparing a model with its best control (alignment runs with `controls=`), NaN/None without one."""
    if not comparison:
        return {
            "best_control": None,
            "control_calibrated": NAN,
            "control_difference": NAN,
            "control_diff_low": NAN,
            "control_diff_high": NAN,
            "above_control": None,
        }
    interval = comparison.get("interval") or [None, None]
    return {
        "best_control": comparison.get("best_control"),
        "control_calibrated": _num(comparison.get("control_calibrated")),
        "control_difference": _num(comparison.get("difference")),
        "control_diff_low": _num(interval[0]),
        "control_diff_high": _num(interval[1]),
        "above_control": comparison.get("above"),
    }


def alignment_rows(path: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of one align record, or of a demo record's summary (used only when its align file is gone)."""
    base = _run_fields(path, record)
    rows = []
    if record["command"] == "align":
        results = record["results"]
        controls = results.get("controls") or {}
        comparisons = {(c["vision"], c["text"], c["metric"]): c for c in controls.get("comparisons", [])}
        roles = (
            [("model", p) for p in results.get("pairs", [])]
            + [("control", p) for p in controls.get("pairs", [])]
            + [("ceiling", p) for p in results.get("ceiling", [])]
        )  # the order of _all_pairs
        for role, pair in roles:
            report = pair["report"]
            s = report.get("settings", {})
            vl, tl = list(pair["vision_layers"]), list(pair["text_layers"])
            dropped = pair.get("dropped_constant_layers") or {}
            for metric, m in report["metrics"].items():
                row_pos, col_pos = m["best_pair"]
                interval = m.get("max_interval") or [None, None]
                vstate, tstate = vl[row_pos], tl[col_pos]
                rows.append(
                    {
                        **base,
                        "command": "align",
                        "n": s.get("num_rows", base["n"]),
                        "k": s.get("k"),
                        **_model_fields("vision", pair["vision"]),
                        **_model_fields("text", pair["text"]),
                        "metric": metric,
                        "best_score": _num(m["best_score"]),
                        "best_vision_state": vstate,
                        "best_text_state": tstate,
                        "vision_depth": _depth(vstate, vl, dropped.get("vision", [])),
                        "text_depth": _depth(tstate, tl, dropped.get("text", [])),
                        "chance": _num(m.get("chance_level")),
                        "chance_source": _CHANCE_SOURCES.get(m.get("chance_source"), m.get("chance_source")),
                        "null_max_mean": _num(m.get("null_max_mean")),
                        "null_max_std": _num(m.get("null_max_std")),
                        "calibrated": _num(m.get("calibrated_score")),
                        "p_value": _num(m.get("p_value")),
                        "z_score": _num(m.get("z_score")),
                        "ci_low": _num(interval[0]),
                        "ci_high": _num(interval[1]),
                        "permutations": s.get("permutations"),
                        "subsamples": s.get("subsamples"),
                        "seed": s.get("seed"),
                        "role": role,
                        **_control_fields(comparisons.get((pair["vision"], pair["text"], metric))),
                    }
                )
    elif record["command"] == "demo":
        demo = (record.get("settings") or {}).get("demo", {})
        for a in record["results"].get("summary", {}).get("alignment", []):
            layers = a.get("layers") or [None, None]
            interval = a.get("interval") or [None, None]
            rows.append(
                {
                    **base,
                    "command": "demo",
                    "k": None,
                    **_model_fields("vision", a["vision"]),
                    **_model_fields("text", a["text"]),
                    "metric": a["metric"],
                    "best_score": _num(a.get("best")),
                    "best_vision_state": layers[0],
                    "best_text_state": layers[1],
                    "vision_depth": NAN,
                    "text_depth": NAN,
                    "chance": _num(a.get("chance")),
                    "chance_source": None,
                    "null_max_mean": _num(a.get("null_max_mean")),
                    "null_max_std": NAN,
                    "calibrated": _num(a.get("calibrated")),
                    "p_value": _num(a.get("p_value")),
                    "z_score": NAN,
                    "ci_low": _num(interval[0]),
                    "ci_high": _num(interval[1]),
                    "permutations": demo.get("permutations"),
                    "subsamples": demo.get("subsamples"),
                    "seed": demo.get("seed"),
                }
            )
    return rows


def probe_rows(path: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of one linear record: every (task, layer) with its headline figure, control and chance."""
    base = _run_fields(path, record)
    if record["command"] != "linear":
        return []
    results = record["results"]
    vision = _model_fields("vision", results["vision"])
    rows = []
    for task in results.get("tasks", []):
        figure, key, (where, chance_key), chance_kind = PROBE_FIGURES[task["kind"]]
        states = [layer["hidden_state"] for layer in task["layers"]]
        for layer in task["layers"]:
            probe, control = layer.get("probe") or {}, layer.get("control") or {}
            chance_from = layer if where == "layer" else probe
            rows.append(
                {
                    **base,
                    **vision,
                    "task": task["name"],
                    "kind": task["kind"],
                    "layer": layer["layer"],
                    "hidden_state": layer["hidden_state"],
                    "depth": _depth(layer["hidden_state"], states, []),
                    "best": layer["layer"] == task.get("best_layer"),
                    "figure": figure,
                    "value": _num(probe.get(key)),
                    "control": _num(control.get(key)),
                    "chance": _num(chance_from.get(chance_key)),
                    "chance_kind": chance_kind,
                    "n_test": layer.get("n_test"),
                    "selection_metric": task.get("selection_metric"),
                    "selection_score": _num(probe.get(task.get("selection_metric"))),
                    "seed": layer.get("seed"),
                }
            )
    return rows


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    for col in (
        "n",
        "k",
        "best_vision_state",
        "best_text_state",
        "permutations",
        "subsamples",
        "seed",
        "layer",
        "hidden_state",
        "n_test",
    ):
        if col in frame:
            frame[col] = frame[col].astype("Int64")  # integers that may be missing
    for col in ("vision_control", "best"):
        if col in frame:
            frame[col] = frame[col].astype(bool)
    return frame


def load(paths: Any) -> Any:
    """Alignment results under `paths` (files or folders, recursively) as a pandas DataFrame with one row per
    (run, vision, text, metric); columns ALIGN_COLUMNS (docs/results.md). A demo file's alignment is read from
    the align file it names; its own summary rows are used only when that file is gone."""
    rows: list[dict[str, Any]] = []
    recs = records(paths)
    have_align = {p for p, r in recs if r["command"] == "align"}
    for path, record in recs:
        if record["command"] == "demo":
            linked = _resolve_linked(record["results"].get("align_results"), path)
            if linked in have_align:
                continue
        rows.extend(alignment_rows(path, record))
    return _frame(rows, ALIGN_COLUMNS)


def load_probes(paths: Any) -> Any:
    """Linear-probe results under `paths` as a pandas DataFrame with one row per (run, vision, task, layer);
    columns PROBE_COLUMNS (docs/results.md). `best` marks the layer chosen on validation data."""
    rows: list[dict[str, Any]] = []
    for path, record in records(paths):
        rows.extend(probe_rows(path, record))
    return _frame(rows, PROBE_COLUMNS)


def finite(value: Any) -> bool:
    """True for a real, finite number (not None, not NaN/inf, not pandas NA)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# --- comparing two runs ------------------------------------------------------------------------------------------

COMPARE_KEYS = ("vision", "text", "metric")
COMPARE_COLUMNS = (
    "vision",
    "text",
    "metric",
    "best_a",
    "best_b",
    "difference",
    "calibrated_a",
    "calibrated_b",
    "calibrated_difference",
    "n_a",
    "n_b",
    "same_rows",
    "paired",
    "diff_low",
    "diff_high",
    "run_a",
    "run_b",
)


# The settings (a results JSON pair's `report.settings`) that fix the subsets drawn for the intervals: two scores
# on the same rows whose settings agree on these were resampled on the same subsets, subsample by subsample.
PAIRING_KEYS = ("seed", "subsamples", "subsample_fraction", "num_rows", "confidence")


def paired_difference_interval(
    metric_a: dict[str, Any],
    metric_b: dict[str, Any],
    *,
    same_rows: bool,
    settings_a: dict[str, Any],
    settings_b: dict[str, Any],
) -> Optional[tuple[float, float]]:
    """The interval of (B - A) of one metric's best score from the per-subsample maxima both runs stored
    (`subsample_maxima`), or None when they cannot be paired: other rows, another seed, subsample count or
    fraction (the subsets would differ). Same rule as `max_interval` (delete-d jackknife, probe.align.stats)."""
    import numpy as np

    from probe.align.stats import jackknife_interval

    a, b = metric_a.get("subsample_maxima"), metric_b.get("subsample_maxima")
    if not same_rows or a is None or b is None or len(a) != len(b) or len(a) < 2:
        return None
    if any(settings_a.get(k) != settings_b.get(k) for k in PAIRING_KEYS):
        return None
    observed = float(metric_b["best_score"]) - float(metric_a["best_score"])
    return jackknife_interval(
        observed,
        np.asarray(b, dtype=float) - np.asarray(a, dtype=float),
        fraction=float(settings_a["subsample_fraction"]),
        confidence=float(settings_a["confidence"]),
    )


def _all_pairs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every scored pair of an align record: the models', the controls' and the text-vs-text ceiling."""
    return [*results.get("pairs", []), *(results.get("controls") or {}).get("pairs", []), *results.get("ceiling", [])]


def _latest(frame: Any, side: str) -> Any:
    """One row per (vision, text, metric): when a side holds several runs of the same pair, the newest."""
    from probe.log import logger

    dup = frame.duplicated(list(COMPARE_KEYS), keep=False)
    if dup.any():
        logger.warning(
            "%s holds %d runs of the same (vision, text, metric); comparing the newest of each",
            side,
            int(frame[dup].run.nunique()),
        )
    return frame.sort_values("created").drop_duplicates(list(COMPARE_KEYS), keep="last")


def compare(a: Any, b: Any) -> Any:
    """Both sides' scores per shared (vision, text, metric), B - A, and whether the rows were the same
    (dataset fingerprint and N). `a`, `b`: results files or run folders (anything `load` takes). Columns
    COMPARE_COLUMNS; `paired` is "paired" with `diff_low`/`diff_high` when both stored subsample scores on
    the same rows (paired_difference_interval), else "unpaired". InputError when nothing is shared."""
    import pandas as pd

    from probe.errors import InputError

    frames = {}
    metric_records: dict[str, dict[tuple[str, str, str, str], dict[str, Any]]] = {}
    for side, paths in (("A", a), ("B", b)):
        frames[side] = _latest(load(paths), side)
        metric_records[side] = {
            (path.stem, pair["vision"], pair["text"], name): (m, pair["report"].get("settings", {}))
            for path, rec in records(paths)
            if rec["command"] == "align"
            for pair in _all_pairs(rec["results"])
            for name, m in pair["report"]["metrics"].items()
        }
    merged = frames["A"].merge(frames["B"], on=list(COMPARE_KEYS), suffixes=("_a", "_b"))
    if merged.empty:
        raise InputError(f"{a} and {b} share no (vision, text, metric): compare runs of the same models and metrics.")
    rows = []
    for r in merged.itertuples():
        same = bool(r.dataset_fingerprint_a == r.dataset_fingerprint_b and r.n_a == r.n_b)
        ma, sa = metric_records["A"].get((r.run_a, r.vision, r.text, r.metric), ({}, {}))
        mb, sb = metric_records["B"].get((r.run_b, r.vision, r.text, r.metric), ({}, {}))
        interval = paired_difference_interval(ma, mb, same_rows=same, settings_a=sa, settings_b=sb)
        rows.append(
            {
                "vision": r.vision,
                "text": r.text,
                "metric": r.metric,
                "best_a": r.best_score_a,
                "best_b": r.best_score_b,
                "difference": r.best_score_b - r.best_score_a,
                "calibrated_a": r.calibrated_a,
                "calibrated_b": r.calibrated_b,
                "calibrated_difference": r.calibrated_b - r.calibrated_a,
                "n_a": r.n_a,
                "n_b": r.n_b,
                "same_rows": same,
                "paired": "paired" if interval else "unpaired",
                "diff_low": interval[0] if interval else NAN,
                "diff_high": interval[1] if interval else NAN,
                "run_a": r.run_a,
                "run_b": r.run_b,
            }
        )
    return pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
