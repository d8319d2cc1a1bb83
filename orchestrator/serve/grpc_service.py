"""The front door over gRPC: a KServe v2 / Triton endpoint serving model ``t2i``.

``tritonclient`` and ``perf_analyzer`` call it exactly as they call Triton. Only the inference,
health and metadata RPCs exist here: Triton's model-control, repository and shared-memory
endpoints are never reachable through the front door (UNIMPLEMENTED). ``serve`` wires the
engine, its background loops and the gRPC server together.
"""

from __future__ import annotations

from concurrent import futures

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from orchestrator.serve.admission import MODEL_NAME, BadInput, parse_request
from orchestrator.serve.config import FrontDoorConfig
from orchestrator.serve.engine import Draining, Engine, Overloaded, Shed, VariantTimeout, WorkerFailed
from orchestrator.serve.loops import ControlThread, HealthThread


class T2IServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, engine: Engine):
        self.engine = engine

    def _auth(self, context) -> None:
        token = self.engine.cfg.auth_token
        if token is None:
            return
        md = dict(context.invocation_metadata())
        if md.get("authorization") != f"Bearer {token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=not self.engine.stop.is_set() and not self.engine.draining)

    def ModelReady(self, request, context):
        return service_pb2.ModelReadyResponse(ready=request.name == MODEL_NAME)

    def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(name="argus-frontdoor", version="0.1.0", extensions=[])

    def ModelMetadata(self, request, context):
        self._auth(context)
        if request.name != MODEL_NAME:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        t = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=MODEL_NAME, versions=["1"], platform="argus",
            inputs=[t(name="PROMPT", datatype="BYTES", shape=[1]), t(name="SEED", datatype="INT64", shape=[1]),
                    t(name="SLO_MS", datatype="FP32", shape=[1]), t(name="TENANT", datatype="BYTES", shape=[1])],
            outputs=[t(name="IMAGE", datatype="UINT8", shape=[-1, -1, 3])],
        )

    def ModelConfig(self, request, context):
        from tritonclient.grpc import model_config_pb2 as mc

        self._auth(context)
        if request.name != MODEL_NAME:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        cfg = mc.ModelConfig(name=MODEL_NAME, platform="argus", max_batch_size=0)
        for name, dt in (("PROMPT", mc.TYPE_STRING), ("SEED", mc.TYPE_INT64), ("SLO_MS", mc.TYPE_FP32), ("TENANT", mc.TYPE_STRING)):
            cfg.input.add(name=name, data_type=dt, dims=[1], optional=name != "PROMPT")
        cfg.output.add(name="IMAGE", data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
        return service_pb2.ModelConfigResponse(config=cfg)

    def ModelInfer(self, request, context):
        self._auth(context)
        eng = self.engine
        try:
            adm = eng.admit(parse_request(request, eng.cfg.default_slo_ms, eng.cfg.tenants, now_s=eng.clock()))
        except BadInput as e:
            eng.metrics.requests.labels(outcome="invalid").inc()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Overloaded as e:
            eng.metrics.requests.labels(outcome="rejected").inc()
            context.set_trailing_metadata((("retry-after-ms", "1000"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except Draining as e:
            eng.metrics.requests.labels(outcome="draining").inc()
            context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        try:
            served = eng.serve(adm)
        except VariantTimeout as e:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(e))
        except WorkerFailed as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        except Shed as e:
            context.set_trailing_metadata((("retry-after-ms", "1000"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        resp = service_pb2.ModelInferResponse(model_name=MODEL_NAME, model_version="1", id=adm.request_id)
        resp.outputs.add(name="IMAGE", datatype="UINT8", shape=list(served.images.shape[1:]))
        resp.raw_output_contents.append(np.ascontiguousarray(served.images[0]).tobytes())
        d = served.decision
        params = {"variant": d.variant, "k": str(served.k), "worker": d.worker, "predicted_quality": f"{d.predicted_quality:.4f}", "reason": d.reason}
        for key, value in params.items():
            resp.parameters[key].string_param = value
        return resp


def serve(cfg: FrontDoorConfig, engine: Engine | None = None, servers: dict | None = None) -> tuple[grpc.Server, Engine]:
    """Start the gRPC front door, its metrics endpoint and background loops; returns (server, engine).
    ``servers``: worker url -> TritonServer owned here (restarted by the health loop when it dies).
    ``engine.close()`` stops the loops."""
    engine = engine or Engine(cfg)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max(16, cfg.max_queue + 8)),
                         options=[("grpc.max_receive_message_length", 8 * 2**20)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(T2IServicer(engine), server)
    bound = server.add_insecure_port(f"{cfg.address}:{cfg.port}")
    if bound == 0:
        raise OSError(f"cannot bind {cfg.address}:{cfg.port}")
    server.start()
    if cfg.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(cfg.metrics_port, addr=cfg.address, registry=engine.metrics.registry)
    ControlThread(engine).start()
    HealthThread(engine, servers).start()
    return server, engine
