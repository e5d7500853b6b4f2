"""torch CUDA tensors -> the C launchers of libsegrt_roi_align_cuda.so (ctypes), for GPU tests and benchmarks.

The launchers run on torch's current stream, exactly as the TensorRT plugin
runs them on the engine's stream.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = "libsegrt_roi_align_cuda.so"
BUILD_HINT = ("build it: cmake -S . -B build -DCMAKE_CUDA_ARCHITECTURES=<your GPU, e.g. 90> && cmake --build build -j "
              "(or set SEGRT_ROI_ALIGN_CUDA_LIB to the .so)")


def find_library() -> Path | None:
    """$SEGRT_ROI_ALIGN_CUDA_LIB (file or folder), sdk/_lib/, build/, build/*/ -- first hit."""
    candidates = []
    env = os.environ.get("SEGRT_ROI_ALIGN_CUDA_LIB")
    if env:
        p = Path(env)
        candidates.append(p / LIBRARY if p.is_dir() else p)
    candidates += [ROOT / "sdk" / "_lib" / LIBRARY, ROOT / "build" / LIBRARY]
    if (ROOT / "build").is_dir():
        candidates += sorted((ROOT / "build").glob(f"*/{LIBRARY}"))
    return next((p for p in candidates if p.is_file()), None)


class CudaRoiAlign:
    """RoIAlign launchers over torch CUDA tensors (float32 or float16 features, float32 rois, int32 indices)."""

    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        i32, i64, f32, vp = ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
        lib.segrt_roi_align_cuda.restype = ctypes.c_int
        lib.segrt_roi_align_cuda.argtypes = [i32, vp, i64, i64, i64, i64, vp, vp, i64, i32, i32, f32, i32, i32, i32,
                                             vp, vp]
        lib.segrt_multi_level_roi_align_cuda.restype = ctypes.c_int
        lib.segrt_multi_level_roi_align_cuda.argtypes = [i32, ctypes.POINTER(vp), ctypes.POINTER(i64),
                                                         ctypes.POINTER(i64), ctypes.POINTER(f32), i32, i64, i64, vp,
                                                         vp, i64, i32, i32, i32, i32, f32, i32, vp, vp]
        self.lib = lib

    @staticmethod
    def _dtype(t) -> int:
        import torch
        if t.dtype == torch.float32:
            return 0
        if t.dtype == torch.float16:
            return 1
        raise TypeError(f"features must be float32 or float16, got {t.dtype}")

    @staticmethod
    def _stream() -> int:
        import torch
        return torch.cuda.current_stream().cuda_stream

    def roi_align(self, x, rois, batch_indices, output_size, spatial_scale, sampling_ratio, mode="avg", aligned=True,
                  out=None):
        """x [N, C, H, W] cuda, rois [K, 4] cuda float32, batch_indices [K] cuda int32 -> [K, C, h, w]."""
        import torch
        oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
        x, rois, idx = x.contiguous(), rois.contiguous(), batch_indices.contiguous()
        assert rois.dtype == torch.float32 and idx.dtype == torch.int32
        n, c, h, w = x.shape
        k = rois.shape[0]
        y = out if out is not None else torch.empty((k, c, oh, ow), dtype=x.dtype, device=x.device)
        err = self.lib.segrt_roi_align_cuda(self._dtype(x), x.data_ptr(), n, c, h, w, rois.data_ptr(), idx.data_ptr(),
                                            k, oh, ow, float(spatial_scale), int(sampling_ratio),
                                            {"avg": 0, "max": 1}[mode], int(bool(aligned)), y.data_ptr(),
                                            self._stream())
        if err != 0:
            raise RuntimeError(f"segrt_roi_align_cuda returned cudaError {err}")
        return y

    def multi_scale_roi_align(self, features, rois, batch_indices, output_size, spatial_scales, sampling_ratio,
                              aligned=False, canonical_scale=224.0, canonical_level=4):
        """features: list of [N, C, H_l, W_l] cuda tensors (finest first) -> [K, C, h, w], one launch."""
        import torch
        oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
        feats = [f.contiguous() for f in features]
        rois, idx = rois.contiguous(), batch_indices.contiguous()
        assert rois.dtype == torch.float32 and idx.dtype == torch.int32
        num = len(feats)
        ptrs = (ctypes.c_void_p * num)(*[f.data_ptr() for f in feats])
        heights = (ctypes.c_int64 * num)(*[f.shape[2] for f in feats])
        widths = (ctypes.c_int64 * num)(*[f.shape[3] for f in feats])
        scales = (ctypes.c_float * num)(*spatial_scales)
        n, c = feats[0].shape[:2]
        k = rois.shape[0]
        y = torch.empty((k, c, oh, ow), dtype=feats[0].dtype, device=feats[0].device)
        err = self.lib.segrt_multi_level_roi_align_cuda(self._dtype(feats[0]), ptrs, heights, widths, scales, num, n,
                                                        c, rois.data_ptr(), idx.data_ptr(), k, oh, ow,
                                                        int(sampling_ratio), int(bool(aligned)),
                                                        float(canonical_scale), int(canonical_level), y.data_ptr(),
                                                        self._stream())
        if err != 0:
            raise RuntimeError(f"segrt_multi_level_roi_align_cuda returned cudaError {err}")
        return y
