"""The front door over HTTP: KServe v2 REST (model ``t2i``) and the OpenAI Images API.

One FastAPI app on uvicorn, in the same process and on the same ``Engine`` as the gRPC servicer:
each route only translates its protocol to ``Engine.handle`` and maps the typed outcome through
``orchestrator.serve.outcomes``. So ``tritonclient.http``, ``perf_analyzer -i http``, curl and
the official ``openai`` client get the same admission rules, decisions and images as gRPC.

    GET  /v2, /v2/health/{live,ready}, /v2/models/t2i[/versions/1][/ready|/config]
    POST /v2/models/t2i[/versions/1]/infer      JSON tensors or the binary tensor extension
    POST /v1/images/generations                 OpenAI Images API (b64_json)
    GET  /v1/models
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import threading
import time
import uuid

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.serve.admission import (
    MIN_QUALITY_PARAMETER,
    MODEL_NAME,
    BadInput,
    Unauthenticated,
    admit_fields,
    check_min_quality,
    check_bearer,
    check_model,
    model_config,
    model_metadata,
    parse_http_request,
)
from orchestrator.serve.engine import Engine, Served
from orchestrator.serve.outcomes import outcome_of

HEADER_LENGTH = "inference-header-content-length"
MAX_BODY_BYTES = 8 * 2**20
"""Largest request body (the gRPC front door's message limit)."""
OPENAI_PATHS = ("/v1/",)
OPENAI_IGNORED_FIELDS = frozenset({"quality", "style", "moderation", "background", "output_compression", "complexity", "safety_identifier"})
"""OpenAI request fields accepted and ignored: the embedded model has no such knobs."""


# ------------------------------------------------------------------ errors, in each protocol's shape
def _error(path: str, status: int, message: str, error_type: str, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    if path.startswith(OPENAI_PATHS):
        body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _error_for(path: str, e: Exception) -> JSONResponse:
    outcome = outcome_of(e)
    if outcome is None:
        return _error(path, 500, f"internal error: {type(e).__name__}", "server_error")
    return _error(path, outcome.http_status, str(e), outcome.openai_type, outcome.retry_after_s)


def _auth(engine: Engine, request: Request) -> None:
    check_bearer(engine.cfg.auth_token, request.headers.get("authorization"))


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise BadInput(f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadInput(f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    return body


def _json_object(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{what} is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{what} must be a JSON object")
    return obj


# ------------------------------------------------------------------ KServe v2
def _split_infer_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON header and the binary tail of a KServe v2 infer request."""
    if header_length is None:
        return _json_object(body, "request body"), b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise BadInput(f"Inference-Header-Content-Length {header_length[:20]} does not fit a {len(body)}-byte body")
    n = int(header_length)
    return _json_object(body[:n], "request header"), body[n:]


def _wants_binary(header: dict) -> bool:
    """Binary IMAGE output when asked for (per output or for all), as tritonclient.http asks by default."""
    outputs = header.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or any(not isinstance(o, dict) or o.get("name") != "IMAGE" for o in outputs):
            raise BadInput("the only output is IMAGE")
        return any(bool((o.get("parameters") or {}).get("binary_data", False)) for o in outputs)
    return bool((header.get("parameters") or {}).get("binary_data_output", False))


def _infer_response(rid: str, served: Served, binary: bool) -> Response:
    image = np.ascontiguousarray(served.images[0])
    out = {"name": "IMAGE", "datatype": "UINT8", "shape": list(image.shape)}
    header = {"model_name": MODEL_NAME, "model_version": "1", "id": rid, "parameters": served.parameters(), "outputs": [out]}
    if not binary:
        out["data"] = image.reshape(-1).tolist()
        return JSONResponse(header)
    raw = image.tobytes()
    out["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(header).encode()
    return Response(head + raw, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(len(head))})


# ------------------------------------------------------------------ OpenAI Images API
def _png_b64(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _openai_request(body: dict, engine: Engine) -> tuple[str, int, int | None, float | None, str | None, float | None]:
    """Validate the request-level fields: (prompt, n, seed, slo_ms, user, min_quality). The prompt and
    the quality floor are checked by ``admit_fields``, with the same messages as every other protocol."""
    def typed(name, kinds, what):
        value = body.get(name)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise BadInput(f"'{name}' must be {what}")
        return value

    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise BadInput("'prompt' is required and must be a string")
    model = typed("model", str, "a string")
    if model is not None:
        check_model(model)
    n = typed("n", int, "an integer")
    n = 1 if n is None else n
    if not 1 <= n <= engine.cfg.max_images_per_request:
        raise BadInput(f"'n' must be in 1..{engine.cfg.max_images_per_request}, got {n}")
    height, width = engine.image_size_px()
    size = typed("size", str, f"a string such as '{width}x{height}'")
    if size not in (None, "auto", f"{width}x{height}"):
        raise BadInput(f"size '{size[:40]}' is not served: this model generates {width}x{height} images only")
    fmt = typed("response_format", str, "a string")
    if fmt not in (None, "b64_json"):
        raise BadInput(f"response_format '{fmt[:40]}' is not served: images are returned inline, use 'b64_json'")
    output_format = typed("output_format", str, "a string")
    if output_format not in (None, "png"):
        raise BadInput(f"output_format '{output_format[:40]}' is not served: images are PNG")
    if body.get("stream"):
        raise BadInput("streaming is not served: set 'stream' to false")
    unknown = set(body) - {"prompt", "model", "n", "size", "response_format", "output_format", "stream", "user", "seed", "slo_ms",
                           MIN_QUALITY_PARAMETER, *OPENAI_IGNORED_FIELDS}
    if unknown:
        raise BadInput(f"unknown fields {sorted(unknown)[:5]}")
    return (prompt, n, typed("seed", int, "an integer"), typed("slo_ms", int | float, "a number"), typed("user", str, "a string"),
            check_min_quality(body.get(MIN_QUALITY_PARAMETER)))


def _decision_headers(served: list[Served]) -> dict[str, str]:
    return {"x-argus-variant": ",".join(s.decision.variant for s in served), "x-argus-k": ",".join(str(s.k) for s in served),
            "x-argus-predicted-quality": ",".join(f"{s.decision.predicted_quality:.4f}" for s in served)}


# ------------------------------------------------------------------ the app
def make_app(engine: Engine) -> FastAPI:
    """The HTTP front door on a shared engine."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        import anyio.to_thread

        # Every admitted request may wait in a thread: as many threads as the admission bound, so
        # overload is answered by the engine (429), not by a queue in front of it.
        anyio.to_thread.current_default_thread_limiter().total_tokens = max(40, engine.cfg.max_queue + 8)
        yield

    app = FastAPI(title="argus front door", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(request.url.path, exc.status_code, str(exc.detail), "invalid_request_error")

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated):
        return _error_for(request.url.path, exc)

    def model_or_404(name: str) -> None:
        try:
            check_model(name)
        except BadInput as e:
            raise StarletteHTTPException(404, str(e)) from None

    @app.get("/v2/health/live")
    async def live():
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def ready():
        return Response(status_code=503 if engine.stop.is_set() or engine.draining else 200)

    @app.get("/v2")
    async def server_metadata():
        return {"name": "argus-frontdoor", "version": "0.1.0", "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str = "1"):
        return Response(status_code=200 if name == MODEL_NAME else 404)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def get_model_metadata(name: str, request: Request, version: str = "1"):
        _auth(engine, request)
        model_or_404(name)
        return model_metadata()

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def get_model_config(name: str, request: Request, version: str = "1"):
        _auth(engine, request)
        model_or_404(name)
        return model_config()

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str = "1"):
        path = request.url.path
        try:
            _auth(engine, request)
            check_model(name)
            header, binary = _split_infer_body(await _body(request), request.headers.get(HEADER_LENGTH))
            wants_binary = _wants_binary(header)
        except BadInput as e:
            engine.metrics.requests.labels(outcome="invalid").inc()
            return _error_for(path, e)
        cfg = engine.cfg
        try:
            adm, served = await run_in_threadpool(
                engine.handle, lambda now_s: parse_http_request(header, binary, cfg.default_slo_ms, cfg.tenants, now_s))
        except Exception as e:  # noqa: BLE001 - every outcome has its status; others are 500
            return _error_for(path, e)
        return _infer_response(adm.request_id, served, wants_binary)

    @app.get("/v1/models")
    async def openai_models(request: Request):
        _auth(engine, request)
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "argus"}]}

    @app.post("/v1/images/generations")
    async def openai_images(request: Request):
        path, cfg = request.url.path, engine.cfg
        try:
            _auth(engine, request)
            prompt, n, seed, slo_ms, user, min_quality = _openai_request(_json_object(await _body(request), "request body"), engine)
        except BadInput as e:
            engine.metrics.requests.labels(outcome="invalid").inc()
            return _error_for(path, e)
        except Exception as e:  # noqa: BLE001 - Unauthenticated, or the workers cannot say the image size
            return _error_for(path, e)
        rid = request.headers.get("x-request-id", "")[:100] or uuid.uuid4().hex[:16]
        base_seed = 0 if seed is None else seed

        def parse(i: int):  # image i of n: its own admitted request, seed + i
            return lambda now_s: admit_fields(prompt, base_seed + i, slo_ms, user, f"{rid}-{i}" if n > 1 else rid, cfg.default_slo_ms,
                                              cfg.tenants, now_s, min_quality)

        results = await asyncio.gather(*(run_in_threadpool(engine.handle, parse(i)) for i in range(n)), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            return _error_for(path, failure)
        served = [s for _, s in results]
        data = await run_in_threadpool(lambda: [{"b64_json": _png_b64(s.images[0])} for s in served])
        height, width = served[0].images.shape[1:3]
        body = {"created": int(time.time()), "data": data, "size": f"{width}x{height}", "output_format": "png",
                "argus": [{"seed": base_seed + i, **s.parameters()} for i, s in enumerate(served)]}
        return JSONResponse(body, headers=_decision_headers(served))

    return app


class HttpServer:
    """uvicorn serving ``make_app(engine)`` in a thread of this process (beside the gRPC server)."""

    def __init__(self, engine: Engine, address: str, port: int):
        import uvicorn

        # Bind here, so a taken port fails in the caller with OSError rather than inside the thread.
        self.sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(make_app(engine), log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="argus-http", daemon=True)

    def start(self, timeout_s: float = 30.0) -> HttpServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP front door did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
