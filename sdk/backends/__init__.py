"""Inference backends: one small file each, one interface (``sdk.backends.base.Backend``)."""
from .base import Backend, TensorInfo

__all__ = ["Backend", "TensorInfo"]
