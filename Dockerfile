# segrt on NVIDIA Triton Inference Server: the official container, segrt installed at build time, the
# model repository written at build time for exactly the artifacts in ./models (untested: no Docker here).
#
#   docker build -t segrt-serve --build-arg MODELS="models/unet.onnx models/maskrcnn.onnx" .
#   docker run --rm --gpus all --shm-size=2g -p 8000:8000 -p 8001:8001 -p 8002:8002 segrt-serve
#
# --shm-size: the Python backend passes every tensor through /dev/shm; Docker's default of 64 MB is too small
# for one 40-megapixel request (its input, classes, instances and probabilities are ~0.6 GB).
# 24.10 = Triton 2.51, the release nvidia-pytriton 0.7.0 bundles (what the tests ran against).
ARG TRITON_VERSION=24.10
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# a C++ compiler for segrt's CPU RoIAlign library (built by CMake during pip install); its version is the one
# of the pinned base image's Ubuntu release
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/segrt
COPY pyproject.toml setup.py CMakeLists.txt README.md ./
COPY sdk ./sdk
COPY export ./export
COPY kernels ./kernels
# installed once, here, not at every start; the local checkout, its dependencies bounded in pyproject.toml
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[serve]'

# The repository holds what the operator chose and nothing else; `segrt serve` then loads only the
# pipeline models (and, with --bls, the network models they call): never a second copy of an engine.
# ONNX Runtime threads are not written into it: each model instance decides them when it loads, on the
# serving machine (its cores / instances).
ARG MODELS="models/unet.onnx"
ARG INSTANCES=1
COPY models /tmp/artifacts/models
WORKDIR /tmp/artifacts
RUN segrt serve ${MODELS} --write-repo /models --instances "${INSTANCES}" \
    && rm -rf /tmp/artifacts/models
WORKDIR /opt/segrt

EXPOSE 8000 8001 8002
# Closed by default: model control off, admin APIs keyed (set SEGRT_ADMIN_KEY at run time to open them to you).
# The server log goes to stdout (docker logs); SIGTERM drains requests in flight and stops within 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["segrt", "serve", "/models", "--host", "0.0.0.0"]
