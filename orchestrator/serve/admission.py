"""Admission: a KServe v2 ``t2i`` request -> a validated ``Admitted`` (or ``BadInput`` with the reason)."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid

import numpy as np
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor

from triton_backend.validation import MAX_PROMPT_BYTES, MAX_TENANT_BYTES, InvalidText, decode_text

log = logging.getLogger("argus.frontdoor")
MODEL_NAME = "t2i"
MAX_SLO_MS = 600_000


class BadInput(ValueError):
    """A request the client must fix (INVALID_ARGUMENT / HTTP 400), with the reason."""


def prompt_for_log(prompt: str) -> str:
    """Prompts are user data: full text only with debug logging, else length and a digest."""
    if log.isEnabledFor(logging.DEBUG):
        return repr(prompt)
    import hashlib

    return f"<prompt {len(prompt)} chars sha1:{hashlib.sha1(prompt.encode('utf-8', 'replace')).hexdigest()[:10]}>"


@dataclasses.dataclass
class Admitted:
    request_id: str
    prompt: str
    seed: int
    slo_ms: float
    tenant: str | None
    arrival_s: float


def _input_arrays(request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    dtypes = {"BYTES": np.object_, "INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP64": np.float64}
    out = {}
    for i, inp in enumerate(request.inputs):
        if inp.datatype not in dtypes:
            raise BadInput(f"input {inp.name} has unsupported datatype {inp.datatype}")
        shape = [int(d) for d in inp.shape]
        if any(d < 0 for d in shape) or len(shape) > 4 or int(np.prod(shape, dtype=np.float64)) > 16:
            raise BadInput(f"input {inp.name[:40]} has shape {shape[:8]}; expected one element ([1] or [1, 1])")
        if i < len(request.raw_input_contents):
            raw = request.raw_input_contents[i]
            arr = deserialize_bytes_tensor(raw) if inp.datatype == "BYTES" else np.frombuffer(raw, dtype=dtypes[inp.datatype])
        elif inp.datatype == "BYTES":
            arr = np.array(list(inp.contents.bytes_contents), dtype=np.object_)
        else:
            field = {"INT64": "int64_contents", "INT32": "int_contents", "FP32": "fp32_contents", "FP64": "fp64_contents"}[inp.datatype]
            arr = np.array(getattr(inp.contents, field), dtype=dtypes[inp.datatype])
        if arr.size != int(np.prod(shape)):
            raise BadInput(f"input {inp.name} has {arr.size} elements for shape {shape}")
        out[inp.name] = arr.reshape(shape)
    return out


def parse_request(request: service_pb2.ModelInferRequest, default_slo_ms: float, tenants: frozenset[str] | None = None,
                  now_s: float | None = None) -> Admitted:
    """Validate one t2i request: one prompt (BYTES [1] or [1,1]), optional SEED, SLO_MS, TENANT."""
    try:
        return _parse_request(request, default_slo_ms, tenants, time.monotonic() if now_s is None else now_s)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed tensor is the client's error, never the server's
        raise BadInput(f"malformed request: {type(e).__name__}: {str(e)[:200]}") from None


def _parse_request(request: service_pb2.ModelInferRequest, default_slo_ms: float, tenants: frozenset[str] | None, now_s: float) -> Admitted:
    if request.model_name != MODEL_NAME:
        raise BadInput(f"unknown model '{request.model_name[:100]}'; this endpoint serves '{MODEL_NAME}'")
    if len(request.inputs) > 8:
        raise BadInput(f"{len(request.inputs)} inputs; expected at most PROMPT, SEED, SLO_MS, TENANT")
    arrays = _input_arrays(request)
    unknown = set(arrays) - {"PROMPT", "SEED", "SLO_MS", "TENANT"}
    if unknown:
        raise BadInput(f"unknown inputs {sorted(unknown)}; expected PROMPT, SEED, SLO_MS, TENANT")
    if "PROMPT" not in arrays:
        raise BadInput("missing input PROMPT")
    prompts = arrays["PROMPT"].reshape(-1)
    if len(prompts) != 1:
        raise BadInput(f"one prompt per request, got {len(prompts)} (batching happens inside the cluster)")
    try:
        prompt = decode_text(prompts[0], "prompt", MAX_PROMPT_BYTES)
    except InvalidText as e:
        raise BadInput(str(e)) from None

    def scalar(name, kinds, default):
        if name not in arrays:
            return default
        a = arrays[name].reshape(-1)
        if a.size != 1 or a.dtype.kind not in kinds:
            raise BadInput(f"{name} must be one {'integer' if kinds == 'iu' else 'number'}")
        return a[0].item()

    seed = int(scalar("SEED", "iu", 0))
    if not 0 <= seed < 2**63:
        raise BadInput(f"SEED must be in [0, 2^63), got {seed}")
    slo = float(scalar("SLO_MS", "iuf", default_slo_ms))
    if not np.isfinite(slo) or not 0 < slo <= MAX_SLO_MS:
        raise BadInput(f"SLO_MS must be in (0, {MAX_SLO_MS}], got {slo}")
    tenant = None
    if "TENANT" in arrays:
        try:
            tenant = decode_text(arrays["TENANT"].reshape(-1)[0], "TENANT", MAX_TENANT_BYTES, printable=True)
        except InvalidText as e:
            raise BadInput(str(e)) from None
        if tenants is not None and tenant not in tenants:
            raise BadInput("unknown tenant")
    if len(request.id) > 128:
        raise BadInput("request id longer than 128 characters")
    rid = request.id or uuid.uuid4().hex[:16]
    return Admitted(rid, prompt, seed, slo, tenant, now_s)
