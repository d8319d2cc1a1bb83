"""The front door as one process: one ``Engine``, its background loops, and every protocol on it.

    gRPC  (cfg.port)          KServe v2, model t2i              grpc_service
    HTTP  (cfg.http_port)     KServe v2 REST + OpenAI Images    http_service
    metrics (cfg.metrics_port) Prometheus
"""

from __future__ import annotations

import threading

from orchestrator.serve.config import FrontDoorConfig
from orchestrator.serve.engine import Engine
from orchestrator.serve.grpc_service import start_grpc
from orchestrator.serve.loops import ControlThread, HealthThread


class FrontDoor:
    """The running servers of one front door; ``stop`` stops them all (the engine stays: close it)."""

    def __init__(self, grpc_server, http_server=None):
        self.grpc = grpc_server
        self.http = http_server

    def stop(self, grace: float | None = None) -> threading.Event:
        if self.http is not None:
            self.http.stop()
        return self.grpc.stop(grace)


def serve(cfg: FrontDoorConfig, engine: Engine | None = None, servers: dict | None = None) -> tuple[FrontDoor, Engine]:
    """Start the gRPC and HTTP front doors, the metrics endpoint and the background loops on one
    engine; returns (front door, engine). ``servers``: worker url -> TritonServer owned here
    (restarted by the health loop when it dies). ``engine.close()`` stops the loops."""
    engine = engine or Engine(cfg)
    grpc_server = start_grpc(cfg, engine)
    http_server = None
    if cfg.http_port is not None:
        from orchestrator.serve.http_service import HttpServer

        try:
            http_server = HttpServer(engine, cfg.address, cfg.http_port).start()
        except BaseException:
            grpc_server.stop(0)
            raise
    if cfg.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(cfg.metrics_port, addr=cfg.address, registry=engine.metrics.registry)
    ControlThread(engine).start()
    HealthThread(engine, servers).start()
    return FrontDoor(grpc_server, http_server), engine
