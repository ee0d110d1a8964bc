"""The plan's text: what `probe plan` prints, and the dry runs of `probe study` and of the other commands.

`format_plan(plan, width=80)` takes a `probe.runs.plan.StudyPlan` (what a study would run and cost, computed
there) and returns it as plain text, no line longer than `width`: the grid and settings, one table of feature
caches per dataset, the alignment and probe work, the disk the new caches need, the gated models and the time
estimate with where its rates come from.
"""

from __future__ import annotations

from typing import Any, Optional

from probe.errors import human_bytes
from probe.report.numbers import fmt_duration


def _states(states: Any) -> str:
    """Hidden-state indices, compactly: `0-24`, `0, 4, 8`, `0, 2, 4, 6, 8, 10, ..., 24`."""
    s = sorted(states)
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    if len(s) > 8:
        return ", ".join(map(str, s[:6])) + f", ..., {s[-1]}"
    return ", ".join(map(str, s))


def _probe_lines(plan: Any) -> list[str]:
    """The linear-probe part of the plan: the runs, their targets, and the layers they read."""
    p = plan.spec.probes
    what = f"labels {', '.join(p.labels)}" if p.labels else "no labels"
    if p.text:
        known = {r.text_state for r in plan.probes if r.text_state is not None}
        state = f"hidden state {_states(known)}" if known else "a hidden state known once loaded"
        what += f"; ridge to {p.text}'s {state} (text_layer={p.text_layer})"
    lines = [f"linear probes: {_n(plan.probe_runs, 'run')} ({what})"]
    known = [r for r in plan.probes if r.states is not None]
    if len(known) == 1 or (known and len({(r.states, r.stored) for r in known}) == 1):
        r = known[0]
        lines.append(
            f"vision hidden states probed{'' if len(plan.probes) == 1 else ' in each run'}: "
            f"{_states(r.states)} ({len(r.states)} of {r.stored} stored; layers={p.layers})"
        )
    elif known:
        lines.append(f"vision hidden states probed: layers={p.layers} of each model's stored ones")
    return lines


def _size(n: Optional[float]) -> str:
    return "?" if n is None else human_bytes(n)


def _rate(flops_per_s: float) -> str:
    """A FLOP rate for people: `0.0736 GFLOP/s`, `312 TFLOP/s`."""
    return f"{flops_per_s / 1e12:.3g} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.3g} GFLOP/s"


def _n(count: int, what: str) -> str:
    """`count` things, the noun in the plural unless there is one: `1 run`, `3 runs`."""
    return f"{count} {what}{'' if count == 1 else 's'}"


def _wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    """`text` as lines of at most `width` characters, the continuation lines indented by `indent`."""
    import textwrap

    return textwrap.wrap(text, width=width, subsequent_indent=indent, break_on_hyphens=False) or [""]


def format_plan(plan: Any, *, width: int = 80) -> str:
    """The `probe.runs.plan.StudyPlan` `plan` as plain text, no line longer than `width` (80 by default); the
    text ends with a newline."""
    spec, s = plan.spec, plan.spec.settings
    out: list[str] = []
    add = lambda text: out.extend(_wrap(text, width))  # noqa: E731
    aligns = bool(spec.vision or spec.text)  # False for a `probe linear` command line: probes only
    add(f"study {spec.name} ({spec.source})")
    if spec.description:
        add(spec.description)
    if aligns:
        add(
            f"grid: {_n(len(spec.vision), 'vision model')} + {_n(len(spec.control_models()), 'control')} x "
            f"{_n(len(spec.text), 'text model')} x {_n(len(spec.datasets), 'dataset')} x "
            f"{_n(len(spec.metrics), 'metric')} ({', '.join(spec.metrics)})"
        )
        add(
            f"settings: k={s.k}, permutations={s.permutations}, subsamples={s.subsamples}, limit={s.limit or 'all'}, "
            f"seed={s.seed}, layers={s.layers}, device {plan.device_kind} ({plan.dtype})"
        )
    else:
        add(
            f"settings: limit={s.limit or 'all'}, seed={s.seed}, caches store layers={s.layers}, "
            f"device {plan.device_kind} ({plan.dtype})"
        )
    name_w = max(10, min(36, max((len(c.model) for c in plan.caches), default=10)))
    header = f"{'model':<{name_w}} {'role':<7} {'states x dim':>12} {'cache':<6} {'disk':>9}"
    for dataset in plan.datasets:
        out.append("")
        add(f"dataset {dataset.name}: N = {dataset.rows if dataset.rows is not None else '?'}; {dataset.note}")
        out.append(header[:width])
        for c in (c for c in plan.caches if c.dataset == dataset.name):
            name = c.model if len(c.model) <= name_w else c.model[: name_w - 1] + "~"
            shape = f"{c.states}x{c.width}" + (f"x{len(c.pools)}" if len(c.pools) > 1 else "") if c.states else "?"
            line = (
                f"{name:<{name_w}} {c.role:<7} {shape:>12} {'exists' if c.exists else 'new':<6} "
                f"{_size(c.bytes):>9}{' gated' if c.gated else ''}"
            )
            out.append(line[:width])
    out.append("")
    if aligns:
        add(
            f"alignment: {plan.model_pairs} model pairs (text vs text included), {plan.layer_pairs:,} layer pairs, "
            f"each scored once and resampled {s.permutations + s.subsamples} times (permutations + subsamples) for "
            f"{len(spec.metrics)} metrics"
        )
    if plan.probe_runs:
        for line in _probe_lines(plan):
            add(line)
    add(
        f"caches: {len(plan.caches) - len(plan.new)} exist, {len(plan.new)} new, needing {_size(plan.new_bytes)} "
        f"of disk (N x states x width x 4 bytes x pools)"
    )
    if plan.gated:
        add(f"gated (need a Hugging Face token with access: `hf auth login` or HF_TOKEN): {', '.join(plan.gated)}")
    rates = plan.assumed
    assumed = f"ASSUMED rates for {plan.device_kind} ({rates.source}; not measured on this machine)"
    rest = f"{', probes not estimated' if plan.probe_runs else ''}; scores already in the score cache are reused"
    m = plan.measured
    left_out = (
        []
        if m is None
        else [
            *([f"{m.short} shorter than {m.min_seconds:.0f} s after loading"] if m.short else []),
            *([f"{m.unsized} of models whose size the registry does not give"] if m.unsized else []),
        ]
    )
    if m is None or m.flops_per_s is None:
        add(
            f"time, from {assumed}: extraction ~{fmt_duration(plan.extract_seconds)}"
            f"{f', alignment ~{fmt_duration(plan.align_seconds)}' if aligns else ''}{rest}"
        )
        why = (
            f"the extractions recorded on this machine on {plan.device_kind} in {plan.dtype} are unusable: "
            f"{', '.join(left_out)}"
            if left_out
            else f"no extraction on {plan.device_kind} in {plan.dtype} recorded on this machine in this cache "
            "folder yet"
        )
        add(f"(not measured: {why})")
    else:
        add(
            f"time: extraction ~{fmt_duration(plan.extract_seconds)}, MEASURED on this machine "
            f"({_n(m.extractions, 'extraction')} on {m.device_kind} in {m.dtype}, {fmt_duration(m.seconds)} in all: "
            f"{_rate(m.flops_per_s)} effective, model loading not included"
            f"{'; left out: ' + ', '.join(left_out) if left_out else ''})"
            f"{f'; alignment ~{fmt_duration(plan.align_seconds)}, from {assumed}' if aligns else ''}{rest}"
        )
    for note in plan.notes:
        add(note)
    return "\n".join(out) + "\n"
