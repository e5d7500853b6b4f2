"""The gRPC client reaches a restarted server at once, although its earlier connection attempts failed.

gRPC shares connections between the channels of a process, with a reconnect backoff that grows to
minutes; a stand-in for Triton's gRPC service (its real protobuf service, answering ServerLive)
appears on a port that refused connections for several seconds."""

from __future__ import annotations

import time
from concurrent import futures

import pytest

grpc = pytest.importorskip("grpc", reason="needs grpcio (pip install 'segrt[serve]')")
tc = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install 'segrt[serve]')")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402

from segrt.serve.client import grpc_channel_args  # noqa: E402
from segrt.serve.server import free_ports  # noqa: E402


class _Live(service_pb2_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)


def test_a_client_reaches_a_restarted_server_without_waiting_out_the_backoff():
    (port,) = free_ports(1)
    url = f"127.0.0.1:{port}"
    old = tc.InferenceServerClient(url, channel_args=grpc_channel_args(tc))
    failures, start = 0, time.monotonic()
    while time.monotonic() - start < 6:  # ~6 s of refused connections: gRPC's default backoff would reach 6.5 s
        with pytest.raises(Exception, match=r"(?i)connect|unavailable"):
            old.is_server_live(client_timeout=0.5)
        failures += 1
        time.sleep(0.05)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Live(), server)
    server.add_insecure_port(url)
    server.start()
    try:
        assert tc.InferenceServerClient(url, channel_args=grpc_channel_args(tc)).is_server_live()  # a new client
        time.sleep(1.2)  # the old client's backoff is capped at 1 s
        assert old.is_server_live(client_timeout=2)
    finally:
        server.stop(0)
    assert failures > 10
