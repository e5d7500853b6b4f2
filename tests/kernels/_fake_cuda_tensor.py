"""A stand-in for a torch CUDA tensor, to drive segrt.ops' CUDA path on a machine without a GPU.

It offers only what segrt.ops._cuda uses of a tensor (``is_cuda``, ``data_ptr``, ``shape``,
``dtype``, ``device``, ``contiguous``, ``float``, ``int``, ``new_empty``), backed by host
memory: the CUDA launchers can be reached and can validate their arguments, but a kernel
launch fails (no GPU), which is the point. ``cuda.current_stream`` plays torch's, so the
binding's stream lookup is exercised too. test_ops_dispatch.py holds every name to torch.Tensor.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

_NAMES = {
    np.dtype(np.float32): "torch.float32",
    np.dtype(np.float16): "torch.float16",
    np.dtype(np.int32): "torch.int32",
    np.dtype(np.int64): "torch.int64",
    np.dtype(np.float64): "torch.float64",
}
TENSOR_API = ("is_cuda", "data_ptr", "shape", "dtype", "device", "contiguous", "float", "int", "new_empty")
streams_asked: list[str] = []


class _Name:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


class FakeCudaTensor:
    is_cuda = True

    def __init__(self, array: np.ndarray, device: str = "cuda:0") -> None:
        self.array = np.ascontiguousarray(array)
        self.device = _Name(device)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> _Name:
        return _Name(_NAMES[self.array.dtype])

    def data_ptr(self) -> int:
        return self.array.ctypes.data if self.array.size else 0

    def contiguous(self) -> FakeCudaTensor:
        return self

    def float(self) -> FakeCudaTensor:
        return FakeCudaTensor(self.array.astype(np.float32), str(self.device))

    def int(self) -> FakeCudaTensor:
        return FakeCudaTensor(self.array.astype(np.int32), str(self.device))

    def new_empty(self, size) -> FakeCudaTensor:
        return FakeCudaTensor(np.empty(tuple(size), self.array.dtype), str(self.device))


def _current_stream(device) -> SimpleNamespace:
    streams_asked.append(str(device))
    return SimpleNamespace(cuda_stream=0)  # the legacy default stream


cuda = SimpleNamespace(current_stream=_current_stream)  # found by the binding as this module's `cuda`
