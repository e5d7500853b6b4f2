"""Test-only stand-ins for what CI cannot have: TensorRT's libraries, a GPU, the CUDA runtime.

``trt_api`` fetches TensorRT's real Python bindings (names and signatures only);
``tensorrt_double`` and ``cudart_double`` execute segrt's TensorRT path on the CPU and are
held to the real modules by ``tests/segrt/test_tensorrt_contract.py``. Never importable as
``tensorrt`` or ``cuda``: fixtures inject them for one test at a time.
"""
