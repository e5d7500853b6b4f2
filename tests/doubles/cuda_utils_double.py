"""A stand-in for ``cuda.bindings.utils`` (tests only): the accessor for a handle's native value.

cuda-bindings 12.9.1/13.0 deprecate ``int(cuda_obj)`` in favour of
``cuda.bindings.utils.get_cuda_native_handle(obj)``; the CUDA double's handles refuse ``int()``
and are read here. Injected by monkeypatching ``segrt.backends.cuda_rt.import_cuda_utils``.
"""

from __future__ import annotations

from typing import Any

from . import cudart_double


def get_cuda_native_handle(obj: Any) -> int:
    """The handle's value (an int is returned unchanged, as cuda-bindings 13.6 does)."""
    return cudart_double._h(obj)
