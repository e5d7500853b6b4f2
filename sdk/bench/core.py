"""The timing core and the one result schema of every segrt benchmark (no torch).

A benchmark is a list of :class:`Variant` declarations. :func:`run_variants` times each
one (warm-up calls, then timed calls), compares its last output with the output of the
reference variant of the same group and mode, and returns a :class:`Report`: one
:class:`Row` per variant with p50/p90 latency, throughput, the speedup over the
reference and the agreement numbers. ``segrt.bench.report`` prints, plots and writes it.

Modes keep the two questions apart: ``"model"`` times the network call alone (for an
artifact: ``backend.run(feed)`` on the exact feed its predictor builds), ``"end_to_end"``
times ``predictor.predict(image)`` (pre-processing, network, post-processing).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from segrt.errors import InputError

SCHEMA = "segrt-bench/1"
MODES = ("model", "end_to_end")

Agreement = Callable[[Any, Any], Mapping[str, float]]


@dataclass
class Timing:
    """Latency statistics of repeated calls; times in milliseconds."""

    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    throughput: float  # images per second at the p50 latency
    mpixel_per_s: float | None  # input megapixels per second at p50, where the pixels per call are known
    peak_rss_mb: float | None  # peak resident memory above the level before the timed calls (MiB), where asked


def interleaved_samples(calls: Mapping[str, Callable[[], Any]], runs: int, warmup: int = 1) -> dict[str, list[float]]:
    """Latency samples (ms) of each call, timed round-robin (one call of each per round), so that a
    change in machine load hits every call alike. ``warmup`` untimed rounds first."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return samples


def timing_from_samples(
    samples_ms: Iterable[float],
    warmup: int = 0,
    images_per_call: float = 1.0,
    pixels_per_call: float | None = None,
    peak_rss_mb: float | None = None,
) -> Timing:
    """Statistics of latency samples (ms): p50/p90 are numpy's linear-interpolated percentiles."""
    ms = np.asarray(list(samples_ms), dtype=np.float64)
    if ms.size == 0:
        raise ValueError("no timing samples: runs must be at least 1")
    p50 = float(np.percentile(ms, 50))
    per_s = 1e3 / p50 if p50 > 0 else float("inf")
    return Timing(
        p50_ms=p50,
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        runs=int(ms.size),
        warmup=int(warmup),
        throughput=images_per_call * per_s,
        mpixel_per_s=None if pixels_per_call is None else pixels_per_call * 1e-6 * per_s,
        peak_rss_mb=peak_rss_mb,
    )


def _rss_bytes() -> int | None:
    """Current resident set size of this process (Linux /proc), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class _PeakRss:
    """Samples the RSS every ``interval_s`` on a thread; ``peak_mb`` = highest sample above the start level."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.start = _rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        now = _rss_bytes()
        if now is not None and self.peak is not None:
            self.peak = max(self.peak, now)

    def __enter__(self) -> _PeakRss:
        if self.start is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.start is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    @property
    def peak_mb(self) -> float | None:
        if self.start is None or self.peak is None:  # /proc unreadable: both are None
            return None
        return (self.peak - self.start) / 2**20


def measure(
    fn: Callable[[], Any],
    runs: int = 10,
    warmup: int = 2,
    *,
    sync: Callable[[], Any] | None = None,
    images_per_call: float = 1.0,
    pixels_per_call: float | None = None,
    rss: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Timing, Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed.

    Args:
        fn: the work; its return value of the last call is handed back (for agreement checks).
        sync: called after each call inside the timed region (e.g. ``torch.cuda.synchronize``), so a
            latency lasts until the result is ready.
        images_per_call / pixels_per_call: for throughput (images/s) and Mpixel/s.
        rss: also sample the peak resident memory above the level before the timed calls.
        clock: seconds, monotonic (tests pass a fake one).

    Returns:
        (:class:`Timing`, the last call's output).
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    out = None
    for _ in range(warmup):
        out = fn()
        if sync:
            sync()
    samples = []
    monitor = _PeakRss() if rss else None
    if monitor:
        monitor.__enter__()
    try:
        for _ in range(runs):
            t0 = clock()
            out = fn()
            if sync:
                sync()
            samples.append((clock() - t0) * 1e3)
    finally:
        if monitor:
            monitor.__exit__(None, None, None)
    return timing_from_samples(
        samples, warmup, images_per_call, pixels_per_call, monitor.peak_mb if monitor else None
    ), out


@dataclass
class Variant:
    """One way of doing the work, declared by a benchmark.

    Args:
        name: what the table shows ("onnxruntime fp32", "pytorch eager fp32", ...).
        factory: builds the callable to time (loading happens here, outside the timed region);
            the callable takes no arguments and returns the output to compare.
        mode: "model" (the network call alone) or "end_to_end" (``predict(image)``).
        reference: the baseline of its group and mode; speedups and agreement are against it.
        agreement: ``agreement(output, reference_output) -> {name: number}``; None = not compared.
        group: which reference applies (e.g. the model or problem size); variants of different
            groups are never compared.
        images_per_call / pixels_per_call: for throughput.
        sync: called after each call inside the timed region (GPU work).
        info: free-form facts printed with the row and kept in the JSON (backend, precision, ...).
    """

    name: str
    factory: Callable[[], Callable[[], Any]]
    mode: str = "end_to_end"
    reference: bool = False
    agreement: Agreement | None = None
    group: str = ""
    images_per_call: float = 1.0
    pixels_per_call: float | None = None
    sync: Callable[[], Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"variant {self.name!r}: mode must be one of {MODES}, not {self.mode!r}")


@dataclass
class Row(Timing):
    """The result of one variant: the one schema every benchmark writes (its :class:`Timing`, plus the below)."""

    variant: str = ""
    group: str = ""
    mode: str = "end_to_end"
    reference: bool = False
    speedup: float | None = None  # reference p50 / this p50, same group and mode; None without a reference
    agreement: dict[str, float] = field(default_factory=dict)  # named numbers against the reference's output
    info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # accuracy on labelled data, where measured

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with the variant's identity first; ``metrics`` only where measured."""
        d = asdict(self)
        if not d["metrics"]:
            del d["metrics"]
        return {k: d.pop(k) for k in ("variant", "group", "mode", "reference")} | d


@dataclass
class Report:
    """All rows of one benchmark run plus what they were measured on."""

    title: str
    rows: list[Row]
    context: dict[str, Any] = field(default_factory=dict)
    pick: list[dict[str, Any]] | None = None  # one ``pick()`` answer per group, where asked
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "title": self.title,
            "context": self.context,
            "rows": [r.to_dict() for r in self.rows],
            "pick": self.pick,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema {d.get('schema')!r})")
        return cls(
            title=d["title"], rows=[Row(**r) for r in d["rows"]], context=dict(d.get("context", {})), pick=d.get("pick")
        )

    def row(self, variant: str, mode: str | None = None, group: str | None = None) -> Row:
        """The row of ``variant`` (optionally of one mode / group); KeyError if absent or ambiguous."""
        found = [r for r in self.rows if r.variant == variant and mode in (None, r.mode) and group in (None, r.group)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} rows match variant={variant!r} mode={mode!r} group={group!r}")
        return found[0]


def _reference_first(variants: list[Variant]) -> list[Variant]:
    """References run before the other variants of their (group, mode); otherwise declaration order."""
    keys: list[tuple[str, str]] = []
    for v in variants:
        if (v.group, v.mode) not in keys:
            keys.append((v.group, v.mode))
    out = []
    for key in keys:
        members = [v for v in variants if (v.group, v.mode) == key]
        refs = [v for v in members if v.reference]
        if len(refs) > 1:
            raise ValueError(
                f"group {key[0]!r} mode {key[1]!r} declares {len(refs)} references: {', '.join(v.name for v in refs)}"
            )
        out += refs + [v for v in members if not v.reference]
    return out


def run_variants(
    variants: list[Variant],
    runs: int = 10,
    warmup: int = 2,
    *,
    rss: bool = False,
    title: str = "",
    context: Mapping[str, Any] | None = None,
    progress: Callable[[str], Any] | None = print,
    clock: Callable[[], float] = time.perf_counter,
) -> Report:
    """Time every variant and compare it with its reference; returns the :class:`Report`.

    Each variant's callable is built just before it is timed and dropped after, and only the
    reference's output is kept, so memory holds one variant at a time.
    """
    rows: list[Row] = []
    ref_out: dict[tuple[str, str], Any] = {}
    ref_p50: dict[tuple[str, str], float] = {}
    for v in _reference_first(variants):
        key = (v.group, v.mode)
        if progress:
            progress(f"  timing {v.name} ({v.mode.replace('_', ' ')}{', ' + v.group if v.group else ''})")
        fn = v.factory()
        timing, out = measure(
            fn,
            runs,
            warmup,
            sync=v.sync,
            images_per_call=v.images_per_call,
            pixels_per_call=v.pixels_per_call,
            rss=rss,
            clock=clock,
        )
        del fn
        agreement: dict[str, float] = {}
        if v.reference:
            ref_out[key], ref_p50[key] = out, timing.p50_ms
        elif v.agreement is not None and key in ref_out:
            agreement = {k: float(x) for k, x in v.agreement(out, ref_out[key]).items()}
        speedup = ref_p50[key] / timing.p50_ms if key in ref_p50 and timing.p50_ms > 0 else None
        rows.append(
            Row(
                **asdict(timing),
                variant=v.name,
                group=v.group,
                mode=v.mode,
                reference=v.reference,
                speedup=speedup,
                agreement=agreement,
                info=dict(v.info),
            )
        )
        del out
    return Report(title=title, rows=rows, context=dict(context or {}))


@dataclass(frozen=True)
class Within:
    """A budget on an accuracy metric: it may move at most ``tolerance`` from the reference's, either way.

    A gain counts as much as a loss: on held-out data this small it is as much a sign of changed
    predictions. (A tiny slack of 1e-9 keeps runs that agree to float rounding inside.)
    """

    tolerance: float


Budget = Mapping[str, float | Within]  # agreement floors and metric tolerances, by name


def budget_json(budget: Budget) -> dict[str, Any]:
    """A budget as JSON: a floor stays a number, ``Within(t)`` becomes ``{"within": t}``."""
    return {k: {"within": v.tolerance} if isinstance(v, Within) else v for k, v in budget.items()}


def pick(
    report: Report,
    budget: Budget,
    mode: str = "end_to_end",
    group: str | None = None,
    *,
    reference: Mapping[str, float] | None = None,
    among: Collection[str] | None = None,
) -> dict[str, Any]:
    """The fastest variant (lowest p50) of ``mode`` (and ``group``) within every entry of ``budget``.

    ``budget`` maps a name to either
      * a number, the lowest allowed value of that **agreement** number (e.g. ``{"iou": 0.995}`` =
        the foreground IoU against the reference's output is at least 0.995). The reference row
        qualifies without it (its output is the reference);
      * ``Within(tolerance)``: that **metric** (``Row.metrics``, accuracy on labelled data, e.g.
        ``{"segm_AP": Within(0.005)}``) differs from the reference's by at most ``tolerance``, either
        way. The reference's metrics are ``reference`` if given, else those of the reference row of
        the group and mode; every row, the reference row too, is judged against them.
    A variant missing a budgeted number is rejected. ``among``: only these variants compete
    (default: every row of the mode and group).

    Returns:
        {"mode", "group", "budget" (JSON form, see ``budget_json``), "variant" (name, or None when none
        qualifies), "p50_ms", "speedup", "qualified": [names], "rejected": {variant: reason},
        "reference": the reference metrics used (Within budgets only),
        "deltas": {variant: {metric: value - reference}} (Within budgets only)}.

    Raises:
        InputError: no rows to pick from, or a Within budget without reference metrics to hold it to.
    """
    rows = [r for r in report.rows if r.mode == mode and (group is None or r.group == group)]
    if not rows:
        raise InputError(
            f"no {mode} rows{f' in group {group!r}' if group is not None else ''} to pick from",
            "time at least the reference variant in that mode",
        )
    floors = {k: v for k, v in budget.items() if not isinstance(v, Within)}
    within = {k: v.tolerance for k, v in budget.items() if isinstance(v, Within)}
    ref_metrics: dict[str, float] = {}
    if within:
        if reference is None:
            refs = [r for r in rows if r.reference]
            if not refs:
                raise InputError(
                    f"no reference row for {mode}{f' in group {group!r}' if group else ''} to hold the "
                    f"metrics {sorted(within)} to",
                    "declare a reference variant or pass reference=",
                )
            reference = refs[0].metrics
        lacking = sorted(k for k in within if k not in reference)
        if lacking:
            raise InputError(
                f"the reference metrics {sorted(reference)} lack the budgeted {lacking}",
                "measure those metrics on the reference (iou for U-Net, segm_AP/bbox_AP for Mask R-CNN)",
            )
        ref_metrics = {k: float(reference[k]) for k in within}
    candidates = [r for r in rows if among is None or r.variant in among]
    rejected: dict[str, str] = {}
    deltas: dict[str, dict[str, float]] = {}
    ok = []
    for r in candidates:
        misses = (
            []
            if r.reference
            else [
                f"{k} {'missing' if k not in r.agreement else f'{r.agreement[k]:.4g} < {floor:g}'}"
                for k, floor in floors.items()
                if k not in r.agreement or not r.agreement[k] >= floor
            ]
        )
        if within:
            deltas[r.variant] = {k: float(r.metrics[k]) - ref_metrics[k] for k in within if k in r.metrics}
        for k, tol in within.items():
            if k not in r.metrics:
                misses.append(f"{k} missing")
            elif not abs(deltas[r.variant][k]) <= tol + 1e-9:
                misses.append(
                    f"{k} {deltas[r.variant][k]:+.4g} from the reference's {ref_metrics[k]:.4g} "
                    f"(budget {tol:g} either way)"
                )
        if misses:
            rejected[r.variant] = "; ".join(misses)
        else:
            ok.append(r)
    best = min(ok, key=lambda r: r.p50_ms, default=None)
    answer = {
        "mode": mode,
        "group": group,
        "budget": budget_json(budget),
        "variant": best.variant if best else None,
        "p50_ms": best.p50_ms if best else None,
        "speedup": best.speedup if best else None,
        "qualified": [r.variant for r in ok],
        "rejected": rejected,
    }
    if within:
        answer |= {"reference": ref_metrics, "deltas": deltas}
    return answer
