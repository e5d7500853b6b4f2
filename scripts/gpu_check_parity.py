"""GPU parity of the CUDA RoIAlign launchers vs torchvision's CUDA ops, without pytest.

scripts/gpu_check.sh runs tests/kernels/test_roi_align_cuda.py with pytest when
pytest is installed, and this script otherwise (a fresh GPU machine may have
torch but no pytest). Same inputs and tolerances as the tests; exits 1 on any
mismatch. Needs libsegrt_roi_align_cuda.so (found by segrt.ops.native: $SEGRT_ROI_ALIGN_CUDA_LIB,
segrt/_lib/ or build/) and the repository on the import path (gpu_check.sh sets PYTHONPATH).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torchvision

from segrt import native, ops
from segrt.errors import BackendUnavailableError
from tests.kernels._roi_align_cases import EDGE_BOXES, boxes_all_levels, pyramid, random_boxes

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3)}


def check(name: str, got, want, dtype, failures: list[str]) -> None:
    torch.cuda.synchronize()
    err = (got.float() - want.float()).abs().max().item() if got.numel() else 0.0
    try:
        torch.testing.assert_close(got.float(), want.float(), **TOL[dtype])
        print(f"ok    {name:60s} max abs err {err:.2e}")
    except AssertionError:
        print(f"FAIL  {name:60s} max abs err {err:.2e}")
        failures.append(name)


def main() -> int:
    try:
        native.find_library(native.CUDA_ROI_ALIGN)
    except BackendUnavailableError as exc:
        print(exc)
        return 1
    failures: list[str] = []
    rng = np.random.default_rng(100)
    x_np = rng.standard_normal((2, 33, 120, 160)).astype(np.float32)
    for dtype in (torch.float32, torch.float16):
        x = torch.from_numpy(x_np).cuda().to(dtype)
        for scale in (1.0, 0.25, 1 / 16):
            rois_np = np.concatenate([random_boxes(rng, 200, (120 / scale, 160 / scale)), EDGE_BOXES / scale])
            rois = torch.from_numpy(rois_np).cuda()
            idx = torch.from_numpy(rng.integers(0, 2, len(rois_np)).astype(np.int32)).cuda()
            boxes = torch.cat([idx[:, None].float(), rois], 1)
            for aligned in (True, False):
                for ratio in (0, 2):
                    for out in ((7, 7), (14, 14)):
                        got = ops.roi_align(x, rois, idx, out, scale, ratio, "avg", aligned)
                        want = torchvision.ops.roi_align(x.float(), boxes, out, scale, ratio, aligned)
                        check(
                            f"roi_align {str(dtype)[6:]} scale={scale:g} aligned={aligned} ratio={ratio} out={out}",
                            got,
                            want,
                            dtype,
                            failures,
                        )
        feats = [torch.from_numpy(f).cuda().to(dtype) for f in pyramid(rng, 2, 32, (200, 336))]
        rois_np = boxes_all_levels(rng, 400, (200, 336))
        idx_np = np.sort(rng.integers(0, 2, len(rois_np))).astype(np.int32)
        rois, idx = torch.from_numpy(rois_np).cuda(), torch.from_numpy(idx_np).cuda()
        names = ["p2", "p3", "p4", "p5"]
        for out in (7, 14):
            pooler = torchvision.ops.MultiScaleRoIAlign(names, out, 2)
            want = pooler(
                OrderedDict(zip(names, [f.float() for f in feats], strict=True)),
                [rois[idx == i] for i in range(2)],
                [(200, 336), (190, 300)],
            )
            got = ops.multi_scale_roi_align(feats, rois, idx, out, pooler.scales, 2)
            check(f"multi_scale_roi_align {str(dtype)[6:]} out={out}", got, want, dtype, failures)
    empty = ops.roi_align(
        torch.randn(1, 4, 16, 16, device="cuda"),
        torch.zeros(0, 4, device="cuda"),
        torch.zeros(0, dtype=torch.int32, device="cuda"),
        7,
        1.0,
        2,
    )
    check("zero RoIs", empty, torch.zeros(0, 4, 7, 7, device="cuda"), torch.float32, failures)
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
