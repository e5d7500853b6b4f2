"""The one backend interface every runtime implements.

A backend owns a loaded artifact and runs it: ``run(feed) -> outputs`` with
numpy arrays keyed by tensor name. It knows nothing about images, tiles or
masks; predictors (``segrt.unet.predictor``, ``segrt.rcnn.predictor``) do the pre/post-processing.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from segrt.errors import InputError


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of a model input or output.

    ``shape`` entries are ints for fixed dimensions and ``None`` for dynamic ones.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


_B = TypeVar("_B", bound="Backend")


class Backend(abc.ABC):
    """A loaded model that maps named numpy arrays to named numpy arrays."""

    path: Path
    metadata: dict[str, Any]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    @abc.abstractmethod
    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once. ``feed`` must hold every input; returns every output."""

    def close(self) -> None:  # noqa: B027 - optional: a backend that holds nothing keeps this no-op
        """Release the runtime's resources (sessions, device memory)."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def __enter__(self: _B) -> _B:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in self.inputs)
        return f"{self.name}({self.path.name}: {ins})"


def check_feed(inputs: Sequence[TensorInfo], feed: Mapping[str, Any]) -> None:
    """Every model input is in ``feed`` with the dtype and rank the model declares; ``InputError`` otherwise.

    Backends never cast: a float64 image fed to a float32 model is a mistake upstream
    (and a silent copy), so every backend refuses it with the same message.
    ``feed`` values may be numpy arrays or anything with a numpy-compatible ``dtype`` and ``shape``.
    """
    missing = [t.name for t in inputs if t.name not in feed]
    if missing:
        raise InputError(
            f"missing model input(s): {', '.join(missing)}", f"pass a dict with keys {[t.name for t in inputs]}"
        )
    for info in inputs:
        x = feed[info.name]
        if not hasattr(x, "dtype"):
            x = np.asarray(x)
        try:
            same = np.dtype(x.dtype) == info.dtype
        except TypeError:  # a torch dtype: compare by name (torch.float32 -> "float32")
            same = str(x.dtype).rsplit(".", 1)[-1] == info.dtype.name
        if not same:
            raise InputError(
                f"input {info.name!r} has dtype {x.dtype}, the model expects {info.dtype.name}",
                f"convert it before the call, e.g. x.astype(np.{info.dtype.name})",
            )
        if len(x.shape) != len(info.shape):
            raise InputError(
                f"input {info.name!r} has shape {list(x.shape)}, the model takes "
                f"{len(info.shape)} dimensions {['?' if d is None else d for d in info.shape]}",
                "pass one array per input with the model's layout (e.g. NCHW for images)",
            )
