"""The one printer, plot and JSON writer of benchmark reports (``segrt.bench.core.Report``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segrt.bench.core import Report
from segrt.io.files import atomic_path

MODE_TITLES = {"model": "model only", "end_to_end": "end to end"}


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _agreement_text(numbers: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in numbers.items())


def budget_text(budget: dict[str, Any]) -> str:
    """A budget in its JSON form (``segrt.bench.core.budget_json``) as words: "iou >= 0.995, segm_AP within 0.005"."""
    return ", ".join(
        f"{k} within {v['within']:g}" if isinstance(v, dict) else f"{k} >= {v:g}" for k, v in budget.items()
    )


def format_table(report: Report) -> str:
    """Plain-text table: one line per row, grouped by group and mode, with the context above.

    The last column holds the agreement with the reference, after ``[metrics]`` where a row has them.
    """
    lines = [report.title] if report.title else []
    ctx = ", ".join(f"{k} {v}" for k, v in report.context.items() if not isinstance(v, (dict, list)))
    if ctx:
        lines.append(ctx)
    width = max([len(r.variant) for r in report.rows] + [7]) + 2
    has_mpx = any(r.mpixel_per_s is not None for r in report.rows)
    has_rss = any(r.peak_rss_mb is not None for r in report.rows)
    header = (
        f"{'variant':<{width}}{'p50 ms':>10}{'p90 ms':>10}{'img/s':>9}"
        + (f"{'Mpx/s':>8}" if has_mpx else "")
        + (f"{'RSS MiB':>9}" if has_rss else "")
        + f"{'speedup':>9}  agreement with the reference"
    )
    seen = None
    for r in report.rows:
        if (r.group, r.mode) != seen:
            seen = (r.group, r.mode)
            lines += ["", f"[{r.group + ', ' if r.group else ''}{MODE_TITLES.get(r.mode, r.mode)}]", header]
        mark = "reference" if r.reference else _agreement_text(r.agreement)
        if r.metrics:
            mark = f"[{_agreement_text(r.metrics)}] {mark}"
        lines.append(
            f"{r.variant:<{width}}{r.p50_ms:>10.1f}{r.p90_ms:>10.1f}{r.throughput:>9.2f}"
            + (f"{_fmt(r.mpixel_per_s, '.2f'):>8}" if has_mpx else "")
            + (f"{_fmt(r.peak_rss_mb, '.0f'):>9}" if has_rss else "")
            + f"{_fmt(r.speedup, '.2f') + ('x' if r.speedup is not None else ''):>9}  {mark}"
        )
    for p in report.pick or []:
        budget = budget_text(p["budget"])
        where = f"{p['group']}, " if p.get("group") else ""
        if p["variant"] is None:
            lines.append(f"\npick ({where}{MODE_TITLES.get(p['mode'], p['mode'])}, {budget}): no variant qualifies")
        else:
            lines.append(
                f"\npick ({where}{MODE_TITLES.get(p['mode'], p['mode'])}, {budget}): {p['variant']} "
                f"({p['p50_ms']:.1f} ms, {_fmt(p['speedup'], '.2f')}x the reference)"
            )
        for name, why in p["rejected"].items():
            lines.append(f"  not {name}: {why}")
    return "\n".join(lines)


def summarize(report: Report) -> dict[str, Any]:
    """The headline numbers, keyed ``"<variant> / <mode>"`` (prefixed by the group where there is one):
    ``p50_ms``, ``speedup`` (against the reference) and ``agreement``; plus the ``pick`` answers."""

    def key(r: Any) -> str:
        return f"{r.group}: " * bool(r.group) + f"{r.variant} / {r.mode}"

    return {
        "p50_ms": {key(r): r.p50_ms for r in report.rows},
        "speedup": {key(r): r.speedup for r in report.rows if not r.reference},
        "agreement": {key(r): r.agreement for r in report.rows if r.agreement},
        "pick": [{k: p[k] for k in ("group", "variant", "speedup")} for p in report.pick or []],
    }


def write_json(report: Report, path: str | Path) -> Path:
    """Write the report as JSON, atomically (a temporary name, then a rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return path


def read_json(path: str | Path) -> Report:
    """A report written by :func:`write_json`."""
    return Report.from_dict(json.loads(Path(path).read_text()))


def plot(report: Report, path: str | Path, log: Any = print) -> Path | None:
    """Bar chart of p50 latency with p90 whiskers, one panel per group and mode (PNG, atomic).

    Needs matplotlib; without it, says so through ``log`` and returns None.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    panels: list[tuple[str, str]] = []
    for r in report.rows:
        if (r.group, r.mode) not in panels:
            panels.append((r.group, r.mode))
    most = max(sum(1 for r in report.rows if (r.group, r.mode) == p) for p in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.0, 1.1 * most + 1.5) * len(panels), 4.2), squeeze=False)
    for ax, (group, mode) in zip(axes[0], panels, strict=True):
        rows = [r for r in report.rows if (r.group, r.mode) == (group, mode)]
        p50 = [r.p50_ms for r in rows]
        bars = ax.bar(
            [r.variant.replace(" ", "\n", 1) for r in rows],
            p50,
            yerr=[[0.0] * len(rows), [r.p90_ms - r.p50_ms for r in rows]],
            capsize=4,
            color=["#999999" if r.reference else "#4a90d9" for r in rows],
        )
        for b, r in zip(bars, rows, strict=True):
            ms = f"{r.p50_ms:.0f}" if r.p50_ms >= 100 else f"{r.p50_ms:.3g}"
            label = f"{ms} ms" + ("" if r.reference or r.speedup is None else f"\n{r.speedup:.2f}x")
            ax.text(b.get_x() + b.get_width() / 2, r.p50_ms, label, ha="center", va="bottom", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{group + ', ' if group else ''}{MODE_TITLES.get(mode, mode)}", fontsize=9)
        ax.set_ylabel("ms per call (p50, whisker p90)")
    fig.suptitle(report.title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
