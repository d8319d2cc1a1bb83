"""One way to open an exported graph with onnxruntime, for the Triton models and the benchmarks
alike: a fixed number of intra-op threads (one per Triton instance here, as with torch), and CUDA
only where asked for and available."""

from __future__ import annotations

import os
from pathlib import Path


def instance_threads() -> int:
    """Threads per model instance (ARGUS_TORCH_THREADS, set by the server launcher; default 1)."""
    return int(os.environ.get("ARGUS_TORCH_THREADS", "1"))


def ort_session(path: Path, threads: int | None = 1, cuda: bool = False):
    """An InferenceSession on ``path``; ``threads`` None leaves onnxruntime's own default."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    providers = [p for p in wanted if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), opts, providers=providers)
