"""Memory per instance of the out-of-core labelling: BandLabeller statistics, union-find and CSV table.

    python benchmarks/instance_table_memory.py --width 8192 --height 8192 --step 4

A W x H mask of isolated dots (one component every ``step`` pixels in each direction) is
labelled in 512-row bands, as ``predict(..., out=)`` does, with the per-instance statistics;
then the union-find is resolved and the CSV table written. No network runs: the peak RSS
growth over the start, divided by the number of components, is the per-instance term of
the out-of-core memory bound (docs/large-images.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from segrt.unet.components import BandLabeller
from segrt.unet.outputs import write_table


def _status(key: str) -> int:
    """A /proc/self/status value in bytes (VmRSS:, VmHWM:)."""
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=8192)
    p.add_argument("--height", type=int, default=8192)
    p.add_argument("--step", type=int, default=4, help="one component every STEP pixels per axis")
    args = p.parse_args()
    W, H, step = args.width, args.height, args.step
    band = np.zeros((512, W), bool)
    band[::step, ::step] = True
    base = _status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak: what follows is measured
    t0 = time.perf_counter()
    labeller = BandLabeller(W, 4, stats=True)
    for y0 in range(0, H, 512):
        labeller.add(band[: min(512, H - y0)])
    pass_peak = _status("VmHWM:") - base
    lut, n = labeller.finish()
    with tempfile.TemporaryDirectory() as tmp:
        write_table(Path(tmp) / "t.csv", labeller.table(lut, n))
    peak = _status("VmHWM:") - base
    print(
        json.dumps(
            {
                "width": W,
                "height": H,
                "components": n,
                "pass_peak_mib": pass_peak / 2**20,
                "peak_mib": peak / 2**20,
                "bytes_per_component": peak / max(n, 1),
                "seconds": time.perf_counter() - t0,
            }
        )
    )


if __name__ == "__main__":
    main()
