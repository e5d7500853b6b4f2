"""Errors a user can act on.

Every error segrt raises on purpose says two things: what is wrong, and what to
do about it. Library tracebacks from deep inside onnxruntime, torch or
TensorRT are caught at the boundary and re-raised as one of these.
"""

from __future__ import annotations


class SegrtError(Exception):
    """Base class: ``problem`` says what is wrong, ``fix`` what to do."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}\n  fix: {fix}")


class InputError(SegrtError, ValueError):
    """An image, array or argument that cannot be used as given."""


class ArtifactError(SegrtError):
    """A model file (checkpoint, ONNX, engine) that is missing, corrupt or foreign."""


class DataError(SegrtError):
    """A dataset folder or annotation file that cannot be read."""


class BackendUnavailableError(SegrtError):
    """An optional runtime (TensorRT, CUDA, onnxruntime-gpu, a native library) is not installed."""


class ServerError(SegrtError):
    """A model server that cannot be started or reached, or that failed a request."""
