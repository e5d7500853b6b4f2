"""segrt's one benchmark harness (no torch): declare variants, time them, compare them, report.

>>> from segrt.bench import Variant, run_variants, format_table
>>> report = run_variants([Variant("numpy", lambda: lambda: sum(range(1000)), mode="model", reference=True)],
...                       runs=3, warmup=1, progress=None)
>>> report.rows[0].speedup
1.0

``segrt.bench.core``: timing (p50/p90, throughput, Mpixel/s, peak RSS), ``Variant``, the result
schema (``Row``, ``Report``) and ``pick`` (the fastest variant within an accuracy ``Budget``:
agreement floors, or ``Within`` a tolerance of the reference's metrics); ``segrt.bench.report``:
the table, the plot and the JSON; ``segrt.bench.agreement``: agreement with the reference's
output; ``segrt.bench.artifacts``: the runtime table and the variants of an exported artifact;
``segrt.bench.cli``: ``segrt bench model`` and the options all benchmark commands share.
"""

from segrt.bench.core import (
    MODES,
    SCHEMA,
    Budget,
    Report,
    Row,
    Timing,
    Variant,
    Within,
    measure,
    pick,
    run_variants,
    timing_from_samples,
)
from segrt.bench.report import format_table, plot, read_json, write_json

__all__ = [
    "MODES",
    "SCHEMA",
    "Budget",
    "Report",
    "Row",
    "Timing",
    "Variant",
    "Within",
    "format_table",
    "measure",
    "pick",
    "plot",
    "read_json",
    "run_variants",
    "timing_from_samples",
    "write_json",
]
