"""Two comparisons the reading study (`probe study webssl-reading`) is about, as DataFrames built from results:

- `picture_text(align)`: every (vision, text, metric) scored on a picture dataset and on its rendered twin (the
  same rows, each caption drawn as the image: `rendered:<dataset>` <-> `<dataset>`, `openmoji-names` <->
  `openmoji`; `probe.datasets.rendered.rendered_source`), the best score, calibrated score and chance on each,
  side by side. Columns PICTURE_TEXT_COLUMNS.
- `filter_effects(records)`: each text-filtered checkpoint (`light2b`, `heavy2b`) beside the checkpoint of the
  same architecture trained on the whole data (`full2b`; `probe.models.names.unfiltered_twin`, from the
  registry's `training_data`), per dataset, text model and metric: both calibrated scores and filtered -
  unfiltered with its paired jackknife interval over the shared subsamples (`probe.align.stats.
  compare_with_control`, the controls' comparison, on the stored `subsample_maxima` and `null_max_mean`), and a
  verdict. Columns FILTER_COLUMNS.

Both read the newest run of a (dataset, vision, text) when there are several; rows are in the order the results
hold them (`filter_effects`: by size, each picture dataset before its rendered twin). An empty DataFrame (with
the columns) when the results hold no such pair. The report's page renders them (probe.report.page).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from probe.report.tables import NAN, PAIRING_KEYS

PICTURE_TEXT_COLUMNS = (
    "pictures",
    "rendered",
    "vision",
    "vision_control",
    "text",
    "metric",
    "n_pictures",
    "n_rendered",
    "best_pictures",
    "calibrated_pictures",
    "chance_pictures",
    "best_rendered",
    "calibrated_rendered",
    "chance_rendered",
)
FILTER_COLUMNS = (
    "dataset",
    "text",
    "metric",
    "family",
    "params_m",
    "full",
    "full_data",
    "full_calibrated",
    "filtered",
    "filtered_data",
    "filtered_calibrated",
    "difference",
    "diff_low",
    "diff_high",
    "confidence",
    "verdict",
    "n",
    "run_full",
    "run_filtered",
)
# Besides the rows (dataset fingerprint) and PAIRING_KEYS (the same subsets), the scoring settings two runs must
# share for their calibrated scores to be compared: neighbours, preprocessing, kernel and the null's size.
SCORING_KEYS = ("k", "clip_quantile", "normalize", "rbf_sigma", "denominator_epsilon", "permutations")
# The verdicts of a filtered - unfiltered difference (the controls' rule: probe.align.stats.ControlComparison).
ABOVE, BELOW, OVERLAPS = "above 0", "below 0", "overlaps 0"
NO_INTERVAL = "no interval (no subsamples)"
NOT_CALIBRATED = "no calibrated score"
NOT_COMPARABLE = "not comparable"


def picture_text(align: Any) -> Any:
    """The pictures beside their rendered text, from the alignment DataFrame `align` (probe.report.tables.load):
    one row per (picture dataset, rendered dataset, vision, text, metric) scored on both, models and controls
    (the text-vs-text ceiling is left out: it reads no image). Columns PICTURE_TEXT_COLUMNS."""
    import pandas as pd

    from probe.datasets.rendered import rendered_source

    keys = ["vision", "text", "metric"]
    scored = align[align["role"].fillna("model") != "ceiling"]
    scored = scored.sort_values("created", kind="stable").drop_duplicates(["dataset", *keys], keep="last")
    scored = scored.sort_index()
    datasets = list(dict.fromkeys(d for d in scored["dataset"] if isinstance(d, str)))
    frames = []
    for rendered in datasets:
        pictures = rendered_source(rendered)
        if pictures not in datasets:
            continue
        both = scored[scored.dataset == pictures].merge(
            scored[scored.dataset == rendered], on=keys, suffixes=("_pictures", "_rendered")
        )
        frames.append(
            pd.DataFrame(
                {
                    "pictures": pictures,
                    "rendered": rendered,
                    **{k: both[k] for k in keys},
                    "vision_control": both["vision_control_pictures"],
                    **{
                        f"{column}_{side}": both[f"{source}_{side}"]
                        for side in ("pictures", "rendered")
                        for column, source in (("n", "n"), ("best", "best_score"), ("calibrated", "calibrated"))
                    },
                    "chance_pictures": both["chance_pictures"],
                    "chance_rendered": both["chance_rendered"],
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(PICTURE_TEXT_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(PICTURE_TEXT_COLUMNS)]


def _canonical(name: str) -> str:
    """A vision model's registered alias (a hub id or another spelling of it), else `name` as written."""
    from probe.models.names import registered

    spec = registered(name)
    return spec.alias if spec is not None else name


def _latest_pairs(records: Sequence[tuple[Path, dict[str, Any]]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(dataset, vision alias, text) -> the newest model pair of that key in the align `records`, with its run's
    name, creation time and dataset (name, rows, fingerprint)."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path, record in records:
        if record.get("command") != "align":
            continue
        dataset = record.get("dataset") or {}
        for pair in (record.get("results") or {}).get("pairs", []):
            key = (str(dataset.get("name")), _canonical(pair["vision"]), pair["text"])
            entry = {"run": path.stem, "created": str(record.get("created") or ""), "dataset": dataset, "pair": pair}
            if key not in found or entry["created"] >= found[key]["created"]:
                found[key] = entry
    return found


def incomparable(full: dict[str, Any], filtered: dict[str, Any]) -> Optional[str]:
    """Why two pairs' scores cannot be compared subsample by subsample ("other rows", "other settings: seed, k"),
    or None when they can: the same dataset fingerprint and rows, and report settings that agree on
    PAIRING_KEYS and SCORING_KEYS. `full`, `filtered`: entries of `_latest_pairs`."""
    a, b = full["dataset"], filtered["dataset"]
    if a.get("fingerprint") != b.get("fingerprint") or a.get("rows") != b.get("rows"):
        return "other rows"
    sa, sb = (e["pair"]["report"].get("settings") or {} for e in (full, filtered))
    differ = [k for k in (*PAIRING_KEYS, *SCORING_KEYS) if sa.get(k) != sb.get(k)]
    return f"other settings: {', '.join(differ)}" if differ else None


def verdict(interval: Optional[Sequence[float]], *, difference: Optional[float]) -> str:
    """Where a paired interval of a difference lies: ABOVE (its low end > 0), BELOW (its high end < 0) or
    OVERLAPS; NO_INTERVAL without one, NOT_CALIBRATED without a difference."""
    if difference is None:
        return NOT_CALIBRATED
    if interval is None:
        return NO_INTERVAL
    return ABOVE if interval[0] > 0 else BELOW if interval[1] < 0 else OVERLAPS


def _num(value: Optional[float]) -> float:
    return NAN if value is None else float(value)


def filter_effects(records: Sequence[tuple[Path, dict[str, Any]]]) -> Any:
    """Each text-filtered checkpoint against its unfiltered twin, from the results `records` (path, record) as
    probe.report.tables.records gives them: one row per (dataset, text, metric, filtered checkpoint) whose twin
    was scored on the same dataset (by name) with the same text model. `difference` = filtered - unfiltered
    calibrated score with `diff_low`/`diff_high`, its paired interval at `confidence`, when the two are
    comparable (`incomparable`); else `verdict` says "not comparable (<why>)" and the difference is NaN.
    Columns FILTER_COLUMNS."""
    import pandas as pd

    from probe.align.stats import MetricReport, compare_with_control
    from probe.models.names import registered, unfiltered_twin

    pairs = _latest_pairs(records)
    rows = []
    for (dataset, vision, text), filtered in pairs.items():
        twin = unfiltered_twin(vision)
        full = pairs.get((dataset, twin.alias, text)) if twin is not None else None
        if twin is None or full is None:
            continue
        spec = registered(vision)
        assert spec is not None  # unfiltered_twin found a twin, so `vision` is registered
        why = incomparable(full, filtered)
        settings = filtered["pair"]["report"].get("settings") or {}
        full_metrics = full["pair"]["report"]["metrics"]
        for metric, m in filtered["pair"]["report"]["metrics"].items():
            if metric not in full_metrics:
                continue
            f = full_metrics[metric]
            difference, interval = None, None
            if why is None:
                c = compare_with_control(
                    MetricReport.from_dict(m),
                    MetricReport.from_dict(f),
                    fraction=float(settings["subsample_fraction"]),
                    confidence=float(settings["confidence"]),
                )
                difference, interval = c.difference, c.interval
            rows.append(
                {
                    "dataset": dataset,
                    "text": text,
                    "metric": metric,
                    "family": spec.family,
                    "params_m": _num(spec.params_m),
                    "full": twin.alias,
                    "full_data": twin.training_data,
                    "full_calibrated": _num(f.get("calibrated_score")),
                    "filtered": spec.alias,
                    "filtered_data": spec.training_data,
                    "filtered_calibrated": _num(m.get("calibrated_score")),
                    "difference": _num(difference),
                    "diff_low": NAN if interval is None else interval[0],
                    "diff_high": NAN if interval is None else interval[1],
                    "confidence": _num(settings.get("confidence")),
                    "verdict": f"{NOT_COMPARABLE} ({why})" if why else verdict(interval, difference=difference),
                    "n": (filtered["dataset"] or {}).get("rows"),
                    "run_full": full["run"],
                    "run_filtered": filtered["run"],
                }
            )
    rows.sort(key=lambda r: (r["params_m"] if r["params_m"] == r["params_m"] else math.inf, r["full"], *_order(r)))
    frame = pd.DataFrame(rows, columns=list(FILTER_COLUMNS))
    frame["n"] = frame["n"].astype("Int64")
    return frame


def _order(row: dict[str, Any]) -> tuple[str, int]:
    """Where a row's dataset goes within a size: each picture dataset followed by its rendered twin."""
    from probe.datasets.rendered import rendered_source

    source = rendered_source(row["dataset"])
    return (source, 1) if source is not None else (row["dataset"], 0)
