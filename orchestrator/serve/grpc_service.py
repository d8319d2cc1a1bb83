"""The front door over gRPC: a KServe v2 / Triton endpoint serving model ``t2i``.

``tritonclient`` and ``perf_analyzer`` call it exactly as they call Triton. Only the inference,
health and metadata RPCs exist here: Triton's model-control, repository and shared-memory
endpoints are never reachable through the front door (UNIMPLEMENTED).
"""

from __future__ import annotations

from concurrent import futures

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2, service_pb2_grpc

from orchestrator.serve.admission import MODEL_NAME, BadInput, Unauthenticated, check_bearer, check_model, model_config, model_metadata, parse_request
from orchestrator.serve.config import FrontDoorConfig
from orchestrator.serve.engine import Engine
from orchestrator.serve.outcomes import outcome_of


class T2IServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, engine: Engine):
        self.engine = engine

    def _auth(self, context) -> None:
        try:
            check_bearer(self.engine.cfg.auth_token, dict(context.invocation_metadata()).get("authorization"))
        except Unauthenticated as e:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))

    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=not self.engine.stop.is_set() and not self.engine.draining)

    def ModelReady(self, request, context):
        return service_pb2.ModelReadyResponse(ready=request.name == MODEL_NAME)

    def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(name="argus-frontdoor", version="0.1.0", extensions=[])

    def _model_or_not_found(self, name: str, context) -> None:
        try:
            check_model(name)
        except BadInput as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))

    def ModelMetadata(self, request, context):
        self._auth(context)
        self._model_or_not_found(request.name, context)
        return json_format.ParseDict(model_metadata(), service_pb2.ModelMetadataResponse())

    def ModelConfig(self, request, context):
        from tritonclient.grpc import model_config_pb2 as mc

        self._auth(context)
        self._model_or_not_found(request.name, context)
        return service_pb2.ModelConfigResponse(config=json_format.ParseDict(model_config(), mc.ModelConfig()))

    def ModelInfer(self, request, context):
        self._auth(context)
        eng = self.engine
        try:
            adm, served = eng.handle(lambda now_s: parse_request(request, eng.cfg.default_slo_ms, eng.cfg.tenants, now_s=now_s))
        except Exception as e:  # noqa: BLE001 - typed outcomes get their status; anything else is INTERNAL
            outcome = outcome_of(e)
            if outcome is None:
                context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}")
            if outcome.retry_after_s is not None:
                context.set_trailing_metadata((("retry-after-ms", str(1000 * outcome.retry_after_s)),))
            context.abort(getattr(grpc.StatusCode, outcome.grpc_code), str(e))
        resp = service_pb2.ModelInferResponse(model_name=MODEL_NAME, model_version="1", id=adm.request_id)
        resp.outputs.add(name="IMAGE", datatype="UINT8", shape=list(served.images.shape[1:]))
        resp.raw_output_contents.append(np.ascontiguousarray(served.images[0]).tobytes())
        for key, value in served.parameters().items():
            resp.parameters[key].string_param = str(value)
        return resp


def start_grpc(cfg: FrontDoorConfig, engine: Engine) -> grpc.Server:
    """The KServe v2 gRPC server on ``cfg.address:cfg.port``, started."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max(16, cfg.max_queue + 8)),
                         options=[("grpc.max_receive_message_length", 8 * 2**20)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(T2IServicer(engine), server)
    bound = server.add_insecure_port(f"{cfg.address}:{cfg.port}")
    if bound == 0:
        raise OSError(f"cannot bind {cfg.address}:{cfg.port}")
    server.start()
    return server
