"""ONNX -> TensorRT engines (fp16, one optimisation profile over the batch axis) with the TensorRT
Python builder API. Only where ``tensorrt`` imports and a CUDA GPU is present; otherwise
``unavailable()`` says why and the build stops at ONNX."""

from __future__ import annotations

import shutil
from pathlib import Path


def unavailable() -> str | None:
    """None when engines can be built here, else the reason they cannot."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        return f"tensorrt is not importable ({e}); install the [gpu] extra on a CUDA machine"
    try:
        import torch

        if torch.cuda.is_available():
            return None
    except ImportError:
        pass
    if shutil.which("nvidia-smi") is None:
        return "no CUDA GPU (torch.cuda.is_available() is false and there is no nvidia-smi)"
    return None


def build_engine(onnx_path: Path, plan_path: Path, max_batch: int, opt_batch: int | None = None, fp16: bool = True,
                 workspace_bytes: int = 8 << 30) -> Path:
    """Serialise an engine whose every input's batch axis spans 1..max_batch (optimised at opt_batch)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16 and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    opt = opt_batch or max(1, max_batch // 2)
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        rest = tuple(inp.shape)[1:]
        profile.set_shape(inp.name, (1, *rest), (opt, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(plan))
    return plan_path
