"""Serve segrt models on NVIDIA Triton Inference Server.

* :func:`write_model_repository`: artifacts -> a Triton model repository (pipeline models on the
  Python backend, network-only models for the official container).
* :class:`TritonServer` / ``segrt serve``: a real ``tritonserver`` on that repository.
* :class:`RemotePredictor`: predict through the server (HTTP or gRPC) with the local result types.

Needs ``pip install 'segrt[serve]'`` (tritonclient; nvidia-pytriton for the bundled server).
"""

from __future__ import annotations

from segrt.serve.client import RemotePredictor
from segrt.serve.repository import parse_config, pipeline_models, write_model_repository
from segrt.serve.server import TritonServer, find_tritonserver

__all__ = [
    "RemotePredictor",
    "TritonServer",
    "find_tritonserver",
    "parse_config",
    "pipeline_models",
    "write_model_repository",
]
