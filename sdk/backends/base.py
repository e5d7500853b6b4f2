"""The one backend interface every runtime implements.

A backend owns a loaded artifact and runs it: ``run(feed) -> outputs`` with
numpy arrays keyed by tensor name. It knows nothing about images, tiles or
masks; predictors (``sdk.unet``, ``sdk.maskrcnn``) do the pre/post-processing.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of a model input or output.

    ``shape`` entries are ints for fixed dimensions and ``None`` for dynamic ones.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


class Backend(abc.ABC):
    """A loaded model that maps named numpy arrays to named numpy arrays."""

    path: Path
    metadata: dict[str, Any]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    @abc.abstractmethod
    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once. ``feed`` must hold every input; returns every output."""

    def close(self) -> None:
        """Release the runtime's resources (sessions, device memory)."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in self.inputs)
        return f"{self.name}({self.path.name}: {ins})"
