"""Inference backends: one small file each, one interface (``segrt.backends.base.Backend``)."""

from segrt.backends.base import Backend, TensorInfo

__all__ = ["Backend", "TensorInfo"]
