"""Predict through a Triton server: the same result objects, and the same numbers, as local ``predict``.

>>> from segrt.serve.client import RemotePredictor
>>> model = RemotePredictor("http://127.0.0.1:8000")          # or "grpc://127.0.0.1:8001"
>>> result = model.predict(image)                              # SegmentationResult / Instances

Errors: a request the server refuses (bad image) raises ``InputError`` with the server's
problem and fix; a server that cannot be reached, times out or fails raises ``ServerError``.
Every call has a timeout, so a dead server never hangs a client.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from segrt.errors import BackendUnavailableError, InputError, SegrtError, ServerError
from segrt.serve import protocol


def _tritonclient(protocol_name: str) -> tuple[Any, Any]:
    try:
        if protocol_name == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        from tritonclient.utils import InferenceServerException
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the Triton client is not installed ({exc})", "pip install 'segrt[serve]' (or tritonclient[all])"
        ) from None
    return tc, InferenceServerException


def parse_url(url: str) -> tuple[str, str]:
    """'http://host:port' | 'grpc://host:port' | 'host:port' (HTTP) -> (protocol, 'host:port')."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "grpc") or not parsed.hostname:
        raise InputError(f"cannot use server URL {url!r}", "use http://HOST:PORT or grpc://HOST:PORT")
    port = parsed.port or (8001 if parsed.scheme == "grpc" else 8000)
    return parsed.scheme, f"{parsed.hostname}:{port}"


# statuses worth retrying: the server (or a dependency) is temporarily unable, the request was fine
RETRY_STATUSES = ("503", "StatusCode.UNAVAILABLE")
RETRY_BASE_S = 0.25
GRPC_MAX_MESSAGE = 2**31 - 1  # Triton's MAX_GRPC_MESSAGE_SIZE (INT32_MAX), as tritonclient sets it
SHM_DTYPES = {"UINT8": np.uint8, "INT32": np.int32, "FP32": np.float32, "UINT16": np.uint16}


def grpc_channel_args(tc: Any) -> list[tuple[str, int]]:
    """tritonclient's own gRPC channel options, plus two that let a client reach a restarted server at once.

    gRPC shares connections (subchannels) between all channels of a process by default, with their
    reconnect backoff (1 s, growing 1.6x per failure, up to 120 s): after a server restart, even a
    new client would fail fast until the backoff of the old connection ran out. A channel-local
    pool and a 1 s backoff cap keep a restart costing at most about a second.
    """
    keepalive = tc.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
        ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def _split_error(message: str) -> tuple[str, str | None]:
    problem, _, fix = message.partition("\n  fix: ")
    return problem.strip(), (fix.strip() or None)


class TritonEndpoint:
    """Stands where a local predictor has its backend: which server and model run the network."""

    name = "triton"

    def __init__(self, url: str, model: str) -> None:
        self.path = f"{url}/v2/models/{model}"

    def __repr__(self) -> str:
        return f"TritonEndpoint({self.path!r})"


class RemotePredictor:
    """A segrt pipeline model on a Triton server, used like a local predictor.

    Args:
        url: ``http://HOST:PORT`` or ``grpc://HOST:PORT``.
        model: pipeline model name (default: the server's only segrt model).
        timeout_s: limit for connecting and for each request, seconds.
        probs: U-Net: also fetch the class probabilities float32 [K, H, W] (off: ``result.probs`` is None,
            and the response is K x 4 bytes per pixel smaller; the server does not compute them).
        instances: U-Net: also fetch the instance labels int32 [H, W] (off: ``result.instances`` is None,
            and the server does not compute them).
        retries: how often a request is retried when the server is unavailable or refuses the connection
            (waits 0.25, 0.5, 1 s, ...); a request the server refuses as bad input is never retried.
        shared_memory: on the server's machine only: send pixel arrays (and receive U-Net outputs) through
            system shared memory instead of the socket. Registering a region is an operator's API: pass
            the server's ``admin_key`` (default: the ``SEGRT_ADMIN_KEY`` environment variable).
        admin_key: the server's admin key (``SEGRT_ADMIN_KEY`` in the server's environment), sent with
            shared-memory calls only.

    Implements the predictor protocol (``segrt.predictor``): ``kind``, ``metadata``, ``backend``
    (a :class:`TritonEndpoint`), ``predict``, ``draw``, ``save``, ``evaluate``, ``last_timings``.
    After each ``predict``, ``last_timings`` holds model_ms (the request's round trip: transfer,
    queueing and the server's whole pipeline) and total_ms (with the client's checks and decoding).
    Usable from several threads (one connection per thread).
    """

    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        timeout_s: float = 60.0,
        probs: bool = True,
        instances: bool = True,
        retries: int = 3,
        shared_memory: bool = False,
        admin_key: str | None = None,
    ) -> None:
        self.protocol, self.address = parse_url(url)
        self.url = f"{self.protocol}://{self.address}"
        self.timeout_s = float(timeout_s)
        self.probs = probs
        self.retries = max(0, int(retries))
        self.shared_memory = bool(shared_memory)
        key = admin_key or os.environ.get("SEGRT_ADMIN_KEY")
        # Triton's gRPC endpoint checks restricted protocols under a prefixed metadata key
        header = ("triton-grpc-protocol-" if self.protocol == "grpc" else "") + protocol.ADMIN_HEADER
        self.admin_headers = {header: key} if key else None
        self._arenas: list[Any] = []
        self._tc, self._exception = _tritonclient(self.protocol)
        self._local = threading.local()
        self._clients: list[Any] = []
        self.model = model or self._only_model()
        config = self._call(self._config)
        params = config.get("parameters", {})
        if "segrt_metadata" not in params:
            raise ServerError(
                f"model {self.model!r} on {self.url} is not a segrt pipeline model",
                "pass the name of a model written by segrt (segrt serve lists them)",
            )
        self.metadata: dict[str, Any] = json.loads(params["segrt_metadata"]["string_value"])
        self.kind: str = self.metadata["kind"]
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.max_pixels = int(params.get("max_pixels", {}).get("string_value", protocol.DEFAULT_MAX_PIXELS))
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.outputs = [
            n for n in protocol.outputs_for(self.kind) if (n != "probs" or probs) and (n != "instances" or instances)
        ]
        self.foreground = int(self.metadata.get("foreground_class", 1))
        self.backend = TritonEndpoint(self.url, self.model)
        self.last_timings: dict[str, float] = {}

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def _client(self) -> Any:
        """This thread's Triton client: the HTTP client (gevent) must stay on the thread that made it."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self._tc.InferenceServerClient(self.address, channel_args=grpc_channel_args(self._tc))
            else:
                client = self._tc.InferenceServerClient(
                    self.address, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            self._local.client = client
            self._clients.append(client)
        return client

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call. Refusals of the request (INVALID_ARG / HTTP 400) -> InputError, never retried;
        an unavailable or unreachable server is retried ``retries`` times with doubling waits (0.25 s, 0.5 s,
        ...), then ServerError; other server faults -> ServerError at once."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except self._exception as exc:
                status, message = str(exc.status() or ""), exc.message() or str(exc)
                if status in ("400", "StatusCode.INVALID_ARGUMENT"):
                    raise InputError(*_split_error(message)) from None
                # a restricted API answers UNAVAILABLE over gRPC, yet retrying cannot help
                retry = (status in RETRY_STATUSES or "connect" in message.lower()) and "restricted" not in message
                error = ServerError(
                    f"{self.url}: {message}",
                    "check that the server is running (segrt serve) and its log; retry once it is ready",
                )
            except SegrtError:
                raise
            except Exception as exc:  # transport failures (refused, reset, closed, timed out) of either library
                retry = isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower()
                error = ServerError(
                    f"{self.url}: {type(exc).__name__}: {exc}",
                    "check that the server is running (segrt serve); retry once it is ready",
                )
            if not retry or attempt >= self.retries:
                raise error from None
            time.sleep(RETRY_BASE_S * 2**attempt)
            attempt += 1

    def _config(self) -> dict[str, Any]:
        if self.protocol == "grpc":
            return self._client.get_model_config(self.model, as_json=True, client_timeout=self.timeout_s)["config"]
        return self._client.get_model_config(self.model)

    def _only_model(self) -> str:
        """The server's only segrt model, from its repository index (which a segrt server closes to clients)."""
        try:
            if self.protocol == "grpc":
                index = self._call(
                    self._client.get_model_repository_index, as_json=True, client_timeout=self.timeout_s
                ).get("models", [])
            else:
                index = self._call(self._client.get_model_repository_index)
        except SegrtError:
            raise InputError(
                f"{self.url} does not list its models (segrt serve closes the repository API to clients)",
                "name the model: RemotePredictor(url, model=NAME), NAME = the file stem (segrt serve prints it)",
            ) from None
        ready = [m["name"] for m in index if m.get("state") == "READY" and not m["name"].endswith("_net")]
        if len(ready) != 1:
            raise InputError(
                f"{self.url} serves {len(ready)} models ({', '.join(ready) or 'none ready'})",
                "name the one to use (RemotePredictor(url, model=NAME) / --server-model NAME)",
            )
        return ready[0]

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """One raw request: input arrays without batch dimension -> output arrays without batch dimension.

        With ``shared_memory``, the inputs (and U-Net outputs, whose sizes follow from the image) travel
        through this thread's shared-memory region instead of the socket.
        """
        tc = self._tc
        arena: Any = self._arena() if self.shared_memory else None
        arrays = {n: np.ascontiguousarray(a[None] if self.batching else a) for n, a in inputs.items()}
        shm_outputs = self._output_shapes(inputs, outputs) if arena is not None else {}
        if arena is not None:
            out_bytes = [int(np.prod(shape)) * np.dtype(SHM_DTYPES[dt]).itemsize for dt, shape in shm_outputs.values()]
            offsets = self._call(arena.layout, [a.nbytes for a in arrays.values()] + out_bytes)
            in_offsets, out_offsets = (
                offsets[: len(arrays)],
                dict(zip(shm_outputs, offsets[len(arrays) :], strict=True)),
            )
        infer_inputs = []
        for k, (name, array) in enumerate(arrays.items()):
            t = tc.InferInput(name, list(array.shape), protocol.TRITON_DTYPES.get(name, "UINT8"))
            if arena is not None:
                arena.write(array, in_offsets[k])
                t.set_shared_memory(arena.name, array.nbytes, offset=in_offsets[k])
            else:
                t.set_data_from_numpy(array)
            infer_inputs.append(t)
        requested = []
        for n in outputs:
            o = tc.InferRequestedOutput(n)
            if n in shm_outputs:
                dt, shape = shm_outputs[n]
                o.set_shared_memory(
                    arena.name, int(np.prod(shape)) * np.dtype(SHM_DTYPES[dt]).itemsize, offset=out_offsets[n]
                )
            requested.append(o)
        if self.protocol == "grpc":
            result = self._call(
                self._client.infer, self.model, infer_inputs, outputs=requested, client_timeout=self.timeout_s
            )
        else:
            result = self._call(self._client.infer, self.model, infer_inputs, outputs=requested)
        out = {}
        for n in outputs:
            if n in shm_outputs:
                dt, shape = shm_outputs[n]
                a = arena.read(SHM_DTYPES[dt], shape, out_offsets[n])
            else:
                a = result.as_numpy(n)
            out[n] = a[0] if self.batching else a
        return out

    def _output_shapes(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, tuple[str, list[int]]]:
        """(Triton dtype, shape with batch dim) of the outputs whose size is known before the request:
        U-Net outputs of a pixel-array request (H x W, K x H x W); others come back over the socket."""
        image = next((a for n, a in inputs.items() if n in protocol.IMAGE_INPUTS.values()), None)
        if self.kind != "unet" or image is None:
            return {}
        h, w = image.shape[:2]
        lead = [1] if self.batching else []
        shapes = {
            "classes": ("UINT8", [h, w]),
            "instances": ("INT32", [h, w]),
            "probs": ("FP32", [len(self.class_names), h, w]),
        }
        return {n: (dt, lead + shape) for n, (dt, shape) in shapes.items() if n in outputs}

    def _arena(self) -> Any:
        """This thread's shared-memory region (see ``segrt.serve.shm``)."""
        arena = getattr(self._local, "arena", None)
        if arena is None:
            from segrt.serve.shm import SharedMemoryArena

            kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
            arena = SharedMemoryArena(self._client, self.admin_headers, **kwargs)
            self._local.arena = arena
            self._arenas.append(arena)
        return arena

    # -- predictor interface -----------------------------------------------------------------
    def predict(self, image: np.ndarray, **options: Any) -> Any:
        """Like local ``predict``: [H, W] or [H, W, C] uint8/uint16/float image -> SegmentationResult / Instances.

        Options: ``tta`` (U-Net). Tiling and batching are the server's (set when its repository was written).
        """
        t0 = time.perf_counter()
        inputs = self._options(options)
        array = protocol.as_request_image(image)
        protocol.check_pixels(array.shape[0], array.shape[1], self.max_pixels)
        inputs[protocol.image_input_name(array)] = array
        t1 = time.perf_counter()
        tensors = self.infer(inputs, self.outputs)
        t2 = time.perf_counter()
        result = protocol.decode_result(self.kind, tensors, self.class_names, image=np.asarray(image))
        self.last_timings = {"model_ms": (t2 - t1) * 1e3, "total_ms": (time.perf_counter() - t0) * 1e3}
        return result

    def _options(self, options: dict[str, Any]) -> dict[str, np.ndarray]:
        from segrt.predictor import check_options

        check_options(self.kind, options, ("tta", "probs") if self.kind == "unet" else ())
        if options.get("probs") not in (None, "auto", "float32") or (options.get("probs") and not self.probs):
            raise InputError(
                f"probs={options['probs']!r} is not available through the server",
                "the server returns float32 probabilities: RemotePredictor(url, model, probs=True)",
            )
        if options.get("tta") is None:
            return {}
        return {protocol.TTA_INPUT: np.array([int(bool(options["tta"]))], np.uint8)}

    def predict_encoded(self, data: bytes, **options: Any) -> Any:
        """Predict on PNG/JPEG/TIFF file bytes, decoded by the server (``result.image`` is None for Mask R-CNN)."""
        inputs = self._options(options)
        inputs[protocol.ENCODED_INPUT] = np.frombuffer(data, np.uint8)
        return protocol.decode_result(self.kind, self.infer(inputs, self.outputs), self.class_names)

    __call__ = predict

    def _local_class(self) -> Any:
        import importlib

        from segrt import PREDICTORS

        module, name = PREDICTORS[self.kind].split(":")
        return getattr(importlib.import_module(module), name)

    def draw(self, image: np.ndarray, result: Any) -> np.ndarray:
        """The same overlay as the local predictor draws, uint8 RGB [H, W, 3]."""
        return self._local_class().draw(self, image, result)

    def save(self, result: Any, out_dir: str | Path, stem: str, image: np.ndarray | None = None) -> list[Path]:
        """The same files as the local predictor writes."""
        return self._local_class().save(self, result, out_dir, stem, image=image)

    def evaluate(self, data: str | Path, **options: Any) -> dict[str, Any]:
        """The local predictor's evaluation (same metrics), every image predicted by the server."""
        if self.kind == "unet" and not self.probs:
            raise InputError("U-Net evaluation needs the probabilities", "use RemotePredictor(url, model, probs=True)")
        return self._local_class().evaluate(self, data, **options)

    def close(self) -> None:
        """Release shared-memory regions and connections (of every thread)."""
        for arena in self._arenas:
            arena.close()
        self._arenas.clear()
        for client in self._clients:
            try:
                client.close()
            except Exception:  # a client of another thread (gevent) may refuse; it is released with the thread
                pass
        self._clients.clear()

    def __enter__(self) -> RemotePredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
