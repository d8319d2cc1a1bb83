"""Helpers for the project's Python-backend models (imported only inside a Triton stub).

The Python backend does not merge a dynamic batch: ``execute`` gets one request per client
call, each with its own batch dimension. ``gather`` concatenates them and ``scatter`` splits
results back, so every model handles batches of N prompts, never just the first one.
A bad request gets its own error response; the others in the batch still run.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import triton_python_backend_utils as pb_utils

from triton_backend.validation import MAX_PROMPT_BYTES, MAX_TENANT_BYTES, InvalidText, decode_text

class BadRequest(ValueError):
    """A request the client must fix; answered with INVALID_ARGUMENT."""


def set_threads() -> None:
    """One torch thread per instance by default (several instances share 2 cores)."""
    import torch

    from triton_backend.ort import instance_threads

    torch.set_num_threads(instance_threads())


def onnx_session(args: dict):
    """An onnxruntime session on this model's ``model.onnx`` when its config says RUNTIME
    onnxruntime, else None (torch). One intra-op thread per instance, like torch here."""
    import json
    from pathlib import Path

    params = json.loads(args["model_config"]).get("parameters", {})
    if params.get("RUNTIME", {}).get("string_value", "torch") != "onnxruntime":
        return None
    path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
    if not path.exists():
        raise FileNotFoundError(f"RUNTIME onnxruntime but {path} is missing; `argus repo write` exports it")
    from triton_backend.ort import instance_threads, ort_session

    return ort_session(path, instance_threads())


def error_response(message: str, invalid: bool = True):
    code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def input_array(request, name: str, required: bool = True) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise BadRequest(f"missing input {name}")
        return None
    return tensor.as_numpy()


def decode_prompts(raw: np.ndarray) -> list[str]:
    """BYTES tensor -> list of prompts; rejects empty, oversized, non-UTF-8 and control-character prompts."""
    try:
        return [decode_text(item, "prompt", MAX_PROMPT_BYTES) for item in raw.reshape(-1)]
    except InvalidText as e:
        raise BadRequest(str(e)) from None


def decode_tenants(request, name: str, n: int, empty_is_default: bool) -> list[str] | None:
    """Per-item tenant ids of an optional BYTES input (None when absent): printable, bounded, one per
    item of a batch of ``n``. ``empty_is_default``: an empty item is the default tenant "" (the
    models' cache link mixes both in one batch), else it is rejected."""
    raw = input_array(request, name, required=False)
    if raw is None:
        return None
    try:
        out = ["" if empty_is_default and not len(t) else decode_text(t, name, MAX_TENANT_BYTES, printable=True) for t in raw.reshape(-1)]
    except InvalidText as e:
        raise BadRequest(str(e)) from None
    if len(out) != n:
        raise BadRequest(f"{name} has {len(out)} items for a batch of {n}")
    return out


def run_batched(
    requests: list,
    parse: Callable[[Any], dict[str, np.ndarray | list]],
    compute: Callable[[dict[str, Any]], dict[str, np.ndarray]],
    *,
    group_key: Callable[[dict[str, Any]], Any] = lambda parsed: None,
    extra_error: Callable[[Exception], bool] = lambda e: False,
) -> list:
    """Parse every request, run ``compute`` once per group of compatible requests, split results.

    ``parse`` turns one request into named arrays (or lists) with a leading batch dim; a
    ``BadRequest`` there fails that request alone. Requests with equal ``group_key`` are
    concatenated and computed together (e.g. same step-skip level K, in lockstep).
    """
    responses: list = [None] * len(requests)
    groups: dict[Any, list[tuple[int, dict]]] = {}
    for i, request in enumerate(requests):
        try:
            parsed = parse(request)
        except BadRequest as e:
            responses[i] = error_response(str(e))
            continue
        groups.setdefault(group_key(parsed), []).append((i, parsed))
    for members in groups.values():
        keys = members[0][1].keys()
        merged = {}
        for k in keys:
            parts = [p[k] for _, p in members]
            merged[k] = sum(parts, []) if isinstance(parts[0], list) else np.concatenate(parts)
        sizes = [len(next(iter(p.values()))) for _, p in members]
        try:
            outputs = compute(merged)
        except BadRequest as e:
            for i, _ in members:
                responses[i] = error_response(str(e))
            continue
        except Exception as e:  # noqa: BLE001 - a failed batch must answer, not crash the instance
            for i, _ in members:
                responses[i] = error_response(f"{type(e).__name__}: {e}", invalid=extra_error(e))
            continue
        start = 0
        for (i, _), n in zip(members, sizes):
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(arr[start : start + n])) for name, arr in outputs.items()]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            start += n
    return responses
