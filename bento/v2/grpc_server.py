"""The gRPC server of a worker: the V2 inference service, the standard health service and reflection.

Every BentoML worker starts one in its event loop once the model is loaded (the lifespan of bento/server/app.py) on
READMISSION_GRPC_PORT (8081; 0: none); the workers share the port (SO_REUSEPORT, the kernel spreads the
connections). Health answers SERVING only while the scoring core is ready, so it turns NOT_SERVING when
SIGTERM begins the drain; the drain waits for gRPC calls too (they count in `core.in_flight`), and the
server then stops with a grace period for the calls still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bento.core.scoring import ScoringCore
from bento.v2.grpc_servicer import SERVICE, InferenceServicer, rpc_handler

logger = logging.getLogger("readmission")
METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
STOP_GRACE_SECONDS = 30  # as the HTTP timeout: the longest call may finish
WATCH_SECONDS = 0.5


class Health(health_pb2_grpc.HealthServicer):
    """`grpc.health.v1.Health` for the server ("") and the inference service: SERVING while the core is ready."""

    def __init__(self, core: ScoringCore) -> None:
        self.core = core

    def _status(self, service: str) -> int | None:
        if service not in ("", SERVICE):
            return None
        return (
            health_pb2.HealthCheckResponse.SERVING if self.core.ready() else health_pb2.HealthCheckResponse.NOT_SERVING
        )

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """The status now; NOT_FOUND for an unknown service."""
        status = self._status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # noqa: N802
        """The status, then each change of it."""
        last = None
        while True:
            status = self._status(request.service)
            if status is None:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_SECONDS)


async def start(core: ScoringCore) -> grpc.aio.Server:
    """Serve the V2 gRPC service, health and reflection on the configured address (already started)."""
    settings = core.settings
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", settings.max_body_bytes),
            # the bounds of bento/server/connections.py: a client must finish the HTTP/2 handshake in the header
            # timeout, a connection with no call for the idle timeout is closed (GOAWAY: clients reconnect), and a
            # connection above the cap is closed at once (grpcio has no answer to give before the handshake)
            ("grpc.server_handshake_timeout_ms", settings.header_timeout_seconds * 1000),
            ("grpc.max_connection_idle_ms", settings.idle_timeout_seconds * 1000),
            ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ]
    )
    servicer = InferenceServicer(core)
    # the protocol's methods take the request's bytes (parsed in `rpc_handler`); Triton's others are not registered
    # (UNIMPLEMENTED)
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            rpc_handler(method, getattr(servicer, method), core),
            response_serializer=lambda response: response.SerializeToString(),
        )
        for method in METHODS
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    health_pb2_grpc.add_HealthServicer_to_server(Health(core), server)
    reflection.enable_server_reflection((SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"gRPC cannot listen on {address}")
    await server.start()
    logger.info("gRPC (Open Inference Protocol V2, health, reflection) on %s", address)
    return server


async def stop(server: grpc.aio.Server) -> None:
    """Stop accepting calls; let those running finish within STOP_GRACE_SECONDS."""
    await server.stop(STOP_GRACE_SECONDS)
