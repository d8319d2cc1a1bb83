"""Admission: a request in any of the front door's protocols -> a validated ``Admitted`` (or
``BadInput`` with the reason).

Every protocol reduces its request to named arrays (KServe v2 gRPC and HTTP) or to fields (the
OpenAI Images API), and all of them end in ``admit_fields``: one set of rules and messages.
"""

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


class Unauthenticated(PermissionError):
    """Missing or wrong bearer token (UNAUTHENTICATED / HTTP 401)."""


def check_bearer(expected_token: str | None, authorization: str | None) -> None:
    """The same token rule for every protocol: ``authorization: Bearer <token>`` when one is configured."""
    if expected_token is not None and authorization != f"Bearer {expected_token}":
        raise Unauthenticated("missing or wrong bearer token")


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
    min_quality: float | None = None
    """The client's floor on predicted relative quality (k0 = 1); None: any variant the policy picks."""


MIN_QUALITY_PARAMETER = "min_quality"
"""KServe request parameter (gRPC and HTTP ``parameters``) and OpenAI Images extension field."""


def check_min_quality(value) -> float | None:
    """A request's quality floor: a number in [0, 1] (relative to full quality), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadInput(f"min_quality must be a number in [0, 1] (relative to full quality), got {str(value)[:40]}")
    return float(value)


def grpc_min_quality(request: service_pb2.ModelInferRequest) -> float | None:
    """``parameters["min_quality"]`` of a gRPC request (double, int64 or a numeric string)."""
    if MIN_QUALITY_PARAMETER not in request.parameters:
        return None
    p = request.parameters[MIN_QUALITY_PARAMETER]
    kind = p.WhichOneof("parameter_choice")
    if kind == "string_param":
        try:
            return check_min_quality(float(p.string_param))
        except ValueError:
            raise BadInput(f"min_quality must be a number in [0, 1], got {p.string_param[:40]!r}") from None
    if kind in ("double_param", "int64_param", "uint64_param"):
        return check_min_quality(getattr(p, kind))
    raise BadInput("min_quality must be a number in [0, 1]")


DTYPES = {"BYTES": np.object_, "INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP64": np.float64}
T2I_INPUTS = (("PROMPT", "BYTES", "TYPE_STRING"), ("SEED", "INT64", "TYPE_INT64"), ("SLO_MS", "FP32", "TYPE_FP32"),
              ("TENANT", "BYTES", "TYPE_STRING"))
"""The ``t2i`` model's inputs: (name, KServe datatype, Triton config type); only PROMPT is required."""
INPUT_NAMES = tuple(name for name, _, _ in T2I_INPUTS)


def check_model(name: str) -> None:
    """Every protocol serves one model; any other name is the client's error, with the same words."""
    if name != MODEL_NAME:
        raise BadInput(f"unknown model '{name[:100]}'; this endpoint serves '{MODEL_NAME}'")


def model_metadata() -> dict:
    """KServe v2 model metadata of ``t2i`` (the JSON form; gRPC parses the same into its message)."""
    return {"name": MODEL_NAME, "versions": ["1"], "platform": "argus",
            "inputs": [{"name": n, "datatype": dt, "shape": [1]} for n, dt, _ in T2I_INPUTS],
            "outputs": [{"name": "IMAGE", "datatype": "UINT8", "shape": [-1, -1, 3]}]}


def model_config() -> dict:
    """Triton's model configuration of ``t2i`` (the JSON form; perf_analyzer reads it)."""
    return {"name": MODEL_NAME, "platform": "argus", "max_batch_size": 0,
            "input": [{"name": n, "data_type": t, "dims": [1], "optional": n != "PROMPT"} for n, _, t in T2I_INPUTS],
            "output": [{"name": "IMAGE", "data_type": "TYPE_UINT8", "dims": [-1, -1, 3]}]}


def _check_shape(name: str, datatype: str, shape: list[int]) -> None:
    if datatype not in DTYPES:
        raise BadInput(f"input {name[:40]} has unsupported datatype {str(datatype)[:20]}")
    if any(d < 0 for d in shape) or len(shape) > 4 or int(np.prod(shape, dtype=np.float64)) > 16:
        raise BadInput(f"input {name[:40]} has shape {shape[:8]}; expected one element ([1] or [1, 1])")


def _input_arrays(request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    """KServe v2 gRPC inputs (raw or typed contents) -> named arrays."""
    out = {}
    for i, inp in enumerate(request.inputs):
        shape = [int(d) for d in inp.shape]
        _check_shape(inp.name, inp.datatype, shape)
        if i < len(request.raw_input_contents):
            raw = request.raw_input_contents[i]
            arr = deserialize_bytes_tensor(raw) if inp.datatype == "BYTES" else np.frombuffer(raw, dtype=DTYPES[inp.datatype])
        elif inp.datatype == "BYTES":
            arr = np.array(list(inp.contents.bytes_contents), dtype=np.object_)
        else:
            field = {"INT64": "int64_contents", "INT32": "int_contents", "FP32": "fp32_contents", "FP64": "fp64_contents"}[inp.datatype]
            arr = np.array(getattr(inp.contents, field), dtype=DTYPES[inp.datatype])
        if arr.size != int(np.prod(shape)):
            raise BadInput(f"input {inp.name} has {arr.size} elements for shape {shape}")
        out[inp.name] = arr.reshape(shape)
    return out


def http_input_arrays(header: dict, binary: bytes) -> dict[str, np.ndarray]:
    """KServe v2 HTTP/REST inputs -> named arrays: JSON ``data``, or the binary tensor extension
    (``parameters.binary_data_size`` bytes each, in input order, after the JSON header)."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadInput("request has no 'inputs' list")
    if len(inputs) > 8:
        raise BadInput(f"{len(inputs)} inputs; expected at most {', '.join(INPUT_NAMES)}")
    out, offset = {}, 0
    for inp in inputs:
        if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
            raise BadInput("each input needs a 'name', 'datatype', 'shape' and 'data' (or binary_data_size)")
        name, datatype, shape = inp["name"], inp.get("datatype"), inp.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise BadInput(f"input {name[:40]} needs 'shape', a list of integers")
        _check_shape(name, datatype, shape)
        size = (inp.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadInput(f"input {name[:40]}: binary_data_size {size} runs past the request body")
            raw, offset = binary[offset : offset + size], offset + size
            arr = deserialize_bytes_tensor(raw) if datatype == "BYTES" else np.frombuffer(raw, dtype=DTYPES[datatype])
        else:
            data = np.asarray(inp.get("data"), dtype=object).reshape(-1)
            if datatype == "BYTES":
                if not all(isinstance(x, str) for x in data):
                    raise BadInput(f"input {name[:40]} (BYTES) needs string data")
                arr = np.array([x.encode("utf-8", "surrogatepass") for x in data], dtype=np.object_)
            else:
                if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in data):
                    raise BadInput(f"input {name[:40]} ({datatype}) needs numeric data")
                arr = data.astype(DTYPES[datatype])
        if arr.size != int(np.prod(shape)):
            raise BadInput(f"input {name[:40]} has {arr.size} elements for shape {shape}")
        out[name] = arr.reshape(shape)
    return out


def parse_request(request: service_pb2.ModelInferRequest, default_slo_ms: float, tenants: frozenset[str] | None = None,
                  now_s: float | None = None) -> Admitted:
    """Validate one KServe v2 gRPC t2i request: one prompt (BYTES [1] or [1,1]), optional SEED, SLO_MS, TENANT."""
    def parse():
        check_model(request.model_name)
        if len(request.inputs) > 8:
            raise BadInput(f"{len(request.inputs)} inputs; expected at most {', '.join(INPUT_NAMES)}")
        return _input_arrays(request)

    return _guarded(lambda: admit_arrays(parse(), request.id, default_slo_ms, tenants, now_s, grpc_min_quality(request)))


def parse_http_request(header: dict, binary: bytes, default_slo_ms: float, tenants: frozenset[str] | None = None,
                       now_s: float | None = None) -> Admitted:
    """Validate one KServe v2 HTTP t2i request (JSON header plus the binary tensor extension's bytes)."""
    rid = header.get("id", "")
    if not isinstance(rid, str):
        raise BadInput("request 'id' must be a string")
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadInput("request 'parameters' must be an object")
    return _guarded(lambda: admit_arrays(http_input_arrays(header, binary), rid, default_slo_ms, tenants, now_s,
                                         params.get(MIN_QUALITY_PARAMETER)))


def _guarded(parse):
    try:
        return parse()
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed tensor is the client's error, never the server's
        raise BadInput(f"malformed request: {type(e).__name__}: {str(e)[:200]}") from None


def admit_arrays(arrays: dict[str, np.ndarray], request_id: str, default_slo_ms: float, tenants: frozenset[str] | None,
                 now_s: float | None, min_quality=None) -> Admitted:
    """Named input arrays (either KServe v2 transport) -> ``admit_fields``."""
    unknown = set(arrays) - set(INPUT_NAMES)
    if unknown:
        raise BadInput(f"unknown inputs {sorted(unknown)}; expected {', '.join(INPUT_NAMES)}")
    if "PROMPT" not in arrays:
        raise BadInput("missing input PROMPT")
    prompts = arrays["PROMPT"].reshape(-1)
    if len(prompts) != 1:
        raise BadInput(f"one prompt per request, got {len(prompts)} (batching happens inside the cluster)")

    def scalar(name, kinds):
        if name not in arrays:
            return None
        a = arrays[name].reshape(-1)
        if a.size != 1 or a.dtype.kind not in kinds:
            raise BadInput(f"{name} must be one {'integer' if kinds == 'iu' else 'number'}")
        return a[0].item()

    tenant = arrays["TENANT"].reshape(-1)[0] if "TENANT" in arrays else None
    return admit_fields(prompts[0], scalar("SEED", "iu"), scalar("SLO_MS", "iuf"), tenant, request_id, default_slo_ms, tenants, now_s,
                        min_quality)


def admit_fields(prompt: bytes | str, seed: int | None, slo_ms: float | None, tenant: bytes | str | None, request_id: str,
                 default_slo_ms: float, tenants: frozenset[str] | None, now_s: float | None, min_quality=None) -> Admitted:
    """The one set of admission rules every protocol ends in."""
    try:
        text = decode_text(prompt, "prompt", MAX_PROMPT_BYTES)
    except InvalidText as e:
        raise BadInput(str(e)) from None
    seed = 0 if seed is None else int(seed)
    if not 0 <= seed < 2**63:
        raise BadInput(f"SEED must be in [0, 2^63), got {seed}")
    slo = default_slo_ms if slo_ms is None else float(slo_ms)
    if not np.isfinite(slo) or not 0 < slo <= MAX_SLO_MS:
        raise BadInput(f"SLO_MS must be in (0, {MAX_SLO_MS}], got {slo}")
    tenant_id = None
    if tenant is not None:
        try:
            tenant_id = decode_text(tenant, "TENANT", MAX_TENANT_BYTES, printable=True)
        except InvalidText as e:
            raise BadInput(str(e)) from None
        if tenants is not None and tenant_id not in tenants:
            raise BadInput("unknown tenant")
    if len(request_id) > 128:
        raise BadInput("request id longer than 128 characters")
    return Admitted(request_id or uuid.uuid4().hex[:16], text, seed, slo, tenant_id, time.monotonic() if now_s is None else now_s,
                    check_min_quality(min_quality))
