"""The HTML report: a self-contained page (inline CSS, plots as inline PNG) from stored runs.

One summary table, threats x defense sets, with measured metrics and the analytic expectation next
to them; then, for each threat with a swept parameter, one figure per parameter with a plot of each
metric against it, one line per defense set. Every user-derived string is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from threatlab.errors import StoreError
from threatlab.lab.catalogue import Catalogue, Threat
from threatlab.lab.runner import RunResult
from threatlab.lab.seeds import canonical_json

REPORT_NAME = "report.html"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.exp { color: #666; } .muted { color: #888; font-size: 0.85em; }
img { max-width: 100%; }
"""


def fmt(value: Any) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def defenses_label(defenses: Sequence[str]) -> str:
    return "+".join(defenses) if defenses else "no defense"


def latest_runs(results: Iterable[RunResult]) -> list[RunResult]:
    """One run per (threat, defenses, params): the latest stored (results come oldest first)."""
    by_point: dict[tuple[str, tuple[str, ...], str], RunResult] = {}
    for r in results:
        point = (r.threat, tuple(r.defenses), canonical_json(dict(r.params)))
        by_point.pop(point, None)  # keep insertion order = latest position
        by_point[point] = r
    return list(by_point.values())


def swept_params(runs: Sequence[RunResult]) -> list[str]:
    """Parameters that take more than one value among `runs`, in first-seen order."""
    seen: dict[str, set[str]] = {}
    for r in runs:
        for name, v in r.params.items():
            seen.setdefault(name, set()).add(canonical_json(v))
    return [name for name, values in seen.items() if len(values) > 1]


def metric_names(runs: Sequence[RunResult], threat: Threat | None) -> list[str]:
    names: list[str] = ["success_rate"]
    if threat is not None:
        names += [m.name for m in threat.metrics]
    for r in runs:
        names += list(r.metrics)
    present = {n for r in runs for n in r.metrics}
    return [n for n in dict.fromkeys(names) if n in present]


def _sort_defense_sets(sets: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return sorted(set(sets), key=lambda d: (len(d), d))


def render_report(results: Iterable[RunResult], catalogue: Catalogue | None = None, *, source: str = "") -> str:
    """The report page as a string."""
    runs = latest_runs(results)
    threats: dict[str, list[RunResult]] = {}
    known = {t.id: t for t in catalogue} if catalogue is not None else {}
    order = [tid for tid in known if any(r.threat == tid for r in runs)]
    order += sorted({r.threat for r in runs} - set(order))
    for tid in order:
        threats[tid] = [r for r in runs if r.threat == tid]

    e = _esc
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>threatlab report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>threatlab report</h1>",
        f'<p class="muted">generated {e(now)}' + (f" from {e(source)}" if source else "")
        + f"; {len(runs)} distinct runs of {len(threats)} threats</p>",
    ]
    if not runs:
        parts.append("<p>No runs in the results store yet: try <code>threatlab run --all</code>.</p>")
    else:
        sections: list[str] = []
        plotted: set[str] = set()
        for tid, truns in threats.items():
            swept = swept_params(truns)
            if tid in known:  # the catalogue's order, not the store's (sorted) one
                rank = {p.name: i for i, p in enumerate(known[tid].params)}
                swept.sort(key=lambda name: rank.get(name, len(rank)))
            if not swept:
                continue
            threat = known.get(tid)
            names = metric_names(truns, threat)
            plots = [(param, plot_lines(truns, param, swept)) for param in swept]
            plots = [(param, lines) for param, lines in plots if lines]
            if not plots:
                continue
            plotted.add(tid)
            title = f" \u2014 {e(threat.title)}" if threat is not None else ""
            sections.append(f'<h2 id="{e(tid)}">{e(tid)}{title}</h2>')
            for param, lines in plots:
                unit = _unit(threat, param)
                sections.append(f"<h3>{e(param)}" + (f" ({e(unit)})" if unit else "") + "</h3>")
                png = _plot(lines, param, names, unit)
                sections.append(f'<img alt="{e(tid)}: metrics vs {e(param)}" src="data:image/png;base64,{png}">')
        parts.append("<h2>Summary: threats \u00d7 defense sets</h2>")
        parts.append(_summary_table(threats, known, plotted))
        parts += sections
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: Iterable[RunResult], out_dir: str | Path, catalogue: Catalogue | None = None, *,
                 source: str = "") -> Path:
    """Write DIR/report.html and return its path."""
    out = Path(out_dir)
    text = render_report(results, catalogue, source=source)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / REPORT_NAME
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot write the report in {out}: {exc.strerror or exc}") from None
    return path


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _unit(threat: Threat | None, param: str) -> str:
    if threat is None:
        return ""
    return next((p.unit for p in threat.params if p.name == param), "")


def _param_diff(run: RunResult, threat: Threat | None) -> str:
    defaults = {p.name: p.default for p in threat.params} if threat is not None else {}
    items = [(k, v) for k, v in sorted(run.params.items()) if k not in defaults or defaults[k] != v]
    if not items:
        return "defaults"
    return ", ".join(f"{k}={fmt(v)}" for k, v in items)


def _representative(runs: list[RunResult], threat: Threat | None) -> RunResult:
    """The run shown in the summary: the latest at the catalogue's defaults, else the latest."""
    if threat is not None:
        defaults = {p.name: p.default for p in threat.params}
        at_defaults = [r for r in runs if dict(r.params) == defaults]
        if at_defaults:
            return at_defaults[-1]
    return runs[-1]


def _summary_table(threats: Mapping[str, list[RunResult]], known: Mapping[str, Threat], plotted: set[str]) -> str:
    e = _esc
    rows = [
        "<table><thead><tr><th>threat</th><th>defenses</th><th>params</th><th>trials</th>"
        "<th>success_rate</th><th>expected</th><th>other metrics: measured (expected)</th></tr></thead><tbody>"
    ]
    for tid, truns in threats.items():
        threat = known.get(tid)
        for dset in _sort_defense_sets(tuple(r.defenses) for r in truns):
            run = _representative([r for r in truns if tuple(r.defenses) == dset], threat)
            exp = run.expected or {}
            link = f'<a href="#{e(tid)}">{e(tid)}</a>' if tid in plotted else e(tid)
            others = []
            for name in metric_names([run], threat):
                if name == "success_rate":
                    continue
                text = f"{e(name)}: {e(fmt(run.metrics.get(name)))}"
                if name in exp:
                    text += f' <span class="exp">({e(fmt(exp[name]))})</span>'
                others.append(text)
            rows.append(
                f"<tr><td>{link}</td><td>{e(defenses_label(dset))}</td>"
                f"<td>{e(_param_diff(run, threat))}</td><td class=\"num\">{run.trials}</td>"
                f'<td class="num">{e(fmt(run.metrics.get("success_rate")))}</td>'
                f'<td class="num exp">{e(fmt(exp.get("success_rate")))}</td>'
                f"<td>{'<br>'.join(others)}</td></tr>"
            )
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _mpl_text(text: str) -> str:
    return str(text).replace("$", r"\$")  # no mathtext from user strings


def plot_lines(runs: list[RunResult], param: str, swept: list[str]) -> dict[tuple[tuple[str, ...], str], list[RunResult]]:
    """Runs grouped into lines for a plot against `param`: one per defense set and values of the other
    swept parameters, keeping only lines with at least two values of `param`."""
    others = [p for p in swept if p != param]
    groups: dict[tuple[tuple[str, ...], str], list[RunResult]] = {}
    sort_keys: dict[tuple[tuple[str, ...], str], tuple] = {}
    for r in runs:
        rest = ", ".join(f"{p}={fmt(r.params.get(p))}" for p in others)
        key = (tuple(r.defenses), rest)
        groups.setdefault(key, []).append(r)
        sort_keys[key] = (len(key[0]), key[0], tuple(_sortable(r.params.get(p)) for p in others))
    lines = {k: v for k, v in groups.items() if len({canonical_json(r.params.get(param)) for r in v}) > 1}
    return {k: lines[k] for k in sorted(lines, key=lambda k: sort_keys[k])}


def _sortable(v: Any) -> tuple:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def _plot(lines: Mapping[tuple[tuple[str, ...], str], list[RunResult]], param: str, names: list[str],
          unit: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    xs_all = [r.params.get(param) for runs in lines.values() for r in runs]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_all)
    categories = sorted({fmt(x) for x in xs_all}) if not numeric else []

    def xpos(v: Any) -> float:
        return float(v) if numeric else float(categories.index(fmt(v)))

    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows + 0.15 * len(lines) + 0.5), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    any_expected = False
    handles: list[Any] = []
    for m_index, metric in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, m_index + 1)
        for k_index, (key, runs) in enumerate(lines.items()):
            dset, rest = key
            pts = sorted(runs, key=lambda r: xpos(r.params.get(param)))
            x = [xpos(r.params.get(param)) for r in pts]
            y = [_nan(r.metrics.get(metric)) for r in pts]
            color = f"C{k_index % 10}"
            label = _mpl_text(defenses_label(dset) + (f" ({rest})" if rest else ""))
            (line,) = ax.plot(x, y, marker="o", color=color, label=label)
            if m_index == 0:
                handles.append(line)
            ye = [_nan((r.expected or {}).get(metric)) for r in pts]
            if any(not math.isnan(v) for v in ye):
                any_expected = True
                ax.plot(x, ye, linestyle="--", color=color, alpha=0.7)
        ax.set_title(_mpl_text(metric), fontsize=10)
        ax.set_xlabel(_mpl_text(param + (f" ({unit})" if unit else "")), fontsize=9)
        if not numeric:
            ax.set_xticks(range(len(categories)), [_mpl_text(c) for c in categories])
        ax.grid(True, alpha=0.3)
    if any_expected:
        handles.append(Line2D([], [], color="gray", linestyle="--", label="analytic expectation"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(2, len(handles)), fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _nan(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
