"""``argus bench engines``: torch vs onnxruntime on CPU for the embedded model, side by side.

Two levels, one run: (1) in-process, each exported part against its PyTorch module at the batch
sizes the server uses, one thread each (as one Triton instance); (2) through Triton, t2i_k0 of the
project's repository (torch inside the Python backend) against the repository build_engines wrote
(onnxruntime inside the Python backend), same prompts, seeds and concurrency. The ratio says which
the CPU default should serve.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from orchestrator.bench.serving import PROMPT, Cell, _drive


@dataclasses.dataclass
class EnginesBenchConfig:
    requests: int = 16
    concurrency: int = 4
    repeats: int = 30
    """Calls per in-process cell."""
    grpc_port: int = 18801
    work_dir: Path | None = None


def _time(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def in_process(cfg: EnginesBenchConfig, model_dir: Path, onnx_dir: Path) -> list[tuple[str, int, float, float]]:
    """(part, batch, torch ms, onnxruntime ms) per exported part."""
    import onnxruntime as ort
    import torch

    from build_engines.export import export_onnx, graph_specs
    from build_engines.pipeline_dir import load

    torch.set_num_threads(1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    rows = []
    for spec in graph_specs(load(model_dir)):
        path = export_onnx(spec, onnx_dir / spec.name / "model.onnx")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for b in ((2, 8) if spec.name.startswith("unet") else (1, 4)):
            feeds = {k: np.ascontiguousarray(np.resize(v, (b, *v.shape[1:]))) for k, v in spec.inputs.items()}
            tensors = [torch.from_numpy(a) for a in feeds.values()]
            with torch.inference_mode():
                t_torch = _time(lambda: spec.module(*tensors), cfg.repeats)
            t_ort = _time(lambda: sess.run(spec.outputs, feeds), cfg.repeats)
            rows.append((spec.name, b, 1000 * t_torch, 1000 * t_ort))
    return rows


def through_triton(cfg: EnginesBenchConfig, repo: Path, models: list[str], name: str, port: int) -> Cell:
    import tritonclient.grpc as grpcclient

    from orchestrator.triton.client import generate
    from orchestrator.triton.server import TritonConfig, TritonServer

    tcfg = TritonConfig(model_repository=repo, grpc_port=port, http_port=port - 1, metrics_port=port + 1, load_models=tuple(models))
    with TritonServer(tcfg) as server:
        client = grpcclient.InferenceServerClient(server.config.grpc_url)
        generate(client, [PROMPT], [0], "k0")
        return _drive(lambda i: generate(client, [PROMPT], [i], "k0"), cfg.requests, cfg.concurrency, name)


def run_engines_bench(cfg: EnginesBenchConfig, console=None) -> dict:
    from rich.table import Table

    from build_engines.build import BuildConfig, build
    from build_engines.pipeline_dir import save_embedded
    from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, write_repository

    log = console.print if console else print
    work = Path(cfg.work_dir or tempfile.mkdtemp(prefix="argus-engines-"))
    model_dir = save_embedded(work / "tiny_sdxl")
    rows = in_process(cfg, model_dir, work / "onnx_bench")
    report = build(BuildConfig(model_dir=model_dir, out_repo=work / "repo", target="onnx", serve_onnx_with="python",
                               max_batch_size=RepositoryConfig().max_batch_size), log=lambda *_: None)
    write_repository(RepositoryConfig(), PROJECT_REPOSITORY)
    torch_cell = through_triton(cfg, PROJECT_REPOSITORY, ["unet", "t2i_k0"], f"torch t2i_k0 c={cfg.concurrency}", cfg.grpc_port)
    log(f"{torch_cell.name}: {torch_cell.images_per_s:.2f} img/s")
    k0_models = [m for m in report.models_to_load if m in ("unet",) or m.endswith("_engine")] + ["t2i_k0"]
    ort_cell = through_triton(cfg, work / "repo", k0_models, f"onnxruntime t2i_k0 c={cfg.concurrency}", cfg.grpc_port + 10)
    log(f"{ort_cell.name}: {ort_cell.images_per_s:.2f} img/s")
    result = {"in_process": [{"part": p, "batch": b, "torch_ms": t, "onnxruntime_ms": o, "speedup": t / o} for p, b, t, o in rows],
              "triton": {c.name: {"images_per_s": c.images_per_s, "p50_ms": c.pct_ms(50), "p99_ms": c.pct_ms(99)} for c in (torch_cell, ort_cell)},
              "triton_speedup": ort_cell.images_per_s / torch_cell.images_per_s, "models_to_load": models_to_load(RepositoryConfig())}
    if console:
        table = Table(title="torch vs onnxruntime on CPU, one thread per instance (one run, side by side)")
        for col in ("part", "batch", "torch ms", "onnxruntime ms", "speedup"):
            table.add_column(col, justify="right")
        for r in result["in_process"]:
            table.add_row(r["part"], str(r["batch"]), f"{r['torch_ms']:.2f}", f"{r['onnxruntime_ms']:.2f}", f"{r['speedup']:.2f}x")
        console.print(table)
        for name, c in result["triton"].items():
            console.print(f"{name}: {c['images_per_s']:.2f} img/s, p50 {c['p50_ms']:.0f} ms, p99 {c['p99_ms']:.0f} ms")
        console.print(f"through Triton: onnxruntime / torch throughput = {result['triton_speedup']:.2f}x")
    return result
