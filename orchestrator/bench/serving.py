"""Serving benchmark: t2i_k0 vs t2i_k25 through Triton, and Triton vs the same pipeline in-process.

Everything is measured in one run, side by side, because these machines are noisy: the ratios
are the result, the absolute numbers only describe this machine at this moment.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient

from orchestrator.triton.client import generate
from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, ensemble_name, models_to_load
from orchestrator.triton.server import TritonConfig, TritonServer

PROMPT = "a large red circle on the left and a small blue square on the right on a gray background"


@dataclasses.dataclass
class ServingBenchConfig:
    requests: int = 24
    """Requests per (variant, concurrency) cell; one prompt each."""
    concurrency: int = 4
    grpc_port: int = 18301
    variants: tuple[str, ...] = ("k0", "k25")


@dataclasses.dataclass
class Cell:
    name: str
    latencies_s: list[float]
    wall_s: float

    @property
    def images_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s

    def pct_ms(self, q: float) -> float:
        return 1000 * float(np.percentile(self.latencies_s, q))


def _drive(fn, n: int, concurrency: int, name: str) -> Cell:
    """Call fn(i) n times from ``concurrency`` threads; per-call latency and total wall time."""
    lat = [0.0] * n

    def one(i):
        t = time.perf_counter()
        fn(i)
        lat[i] = time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return Cell(name, lat, time.perf_counter() - t0)


def _onnx_step(path):
    import torch

    from triton_backend.ort import ort_session

    sess = ort_session(path)

    def step(x, t, hid, pool, time_ids):
        feeds = {"SAMPLE": x.numpy(), "TIMESTEP": t.numpy().reshape(-1, 1), "ENCODER_HIDDEN_STATES": hid.numpy(), "TEXT_EMBEDS": pool.numpy(),
                 "TIME_IDS": time_ids.numpy()}
        return torch.from_numpy(sess.run(["NOISE_PRED"], feeds)[0])

    return step


def run_serving_bench(cfg: ServingBenchConfig, console=None) -> list[Cell]:
    import torch
    from rich.table import Table

    from tiny_model.models import LATENT_CHANNELS, LATENT_SIZE, load_components
    from tiny_model.pipeline import TinyPipeline

    log = console.print if console else print
    repo = RepositoryConfig()
    latent = np.random.RandomState(0).randn(1, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE).astype(np.float32)
    cells: list[Cell] = []
    tcfg = TritonConfig(grpc_port=cfg.grpc_port, http_port=cfg.grpc_port - 1, metrics_port=cfg.grpc_port + 1,
                        load_models=tuple(models_to_load(repo, list(cfg.variants))))
    log(f"starting tritonserver with {', '.join(tcfg.load_models)}")
    with TritonServer(tcfg) as server:
        client = grpcclient.InferenceServerClient(server.config.grpc_url)
        for variant in cfg.variants:
            start = latent if variant != "k0" else None
            generate(client, [PROMPT], [0], variant, start)  # warm-up
            for conc in (1, cfg.concurrency):
                cells.append(_drive(lambda i, v=variant, s=start: generate(client, [PROMPT], [i], v, s), cfg.requests, conc, f"triton {ensemble_name(variant)} c={conc}"))
                log(f"{cells[-1].name}: {cells[-1].images_per_s:.2f} img/s")
    # In-process reference: the same pipeline code, one thread (as each Triton model instance), the
    # UNet on the repository's runtime (onnxruntime: the same exported graph Triton runs).
    torch.set_num_threads(1)
    pipe = TinyPipeline(load_components(), guidance_scale=repo.guidance_scale)
    if repo.runtime == "onnxruntime":
        pipe.unet_step_fn = lambda name="unet": _onnx_step(PROJECT_REPOSITORY / name / "1" / "model.onnx")
    start_t = torch.from_numpy(latent)
    for variant in cfg.variants:
        k = int(variant[1:])
        pipe.generate([PROMPT], [0], k=k, start_latents=start_t)
        cells.append(_drive(lambda i, k=k: pipe.generate([PROMPT], [i], k=k, start_latents=start_t), cfg.requests, 1, f"in-process k{k} c=1"))
        log(f"{cells[-1].name}: {cells[-1].images_per_s:.2f} img/s")

    table = Table(title="t2i serving benchmark (one run, side by side)")
    for col in ("path", "images/s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    for c in cells:
        table.add_row(c.name, f"{c.images_per_s:.2f}", f"{c.pct_ms(50):.0f}", f"{c.pct_ms(99):.0f}")
    by = {c.name: c for c in cells}
    ratios = Table(title="ratios")
    ratios.add_column("what")
    ratios.add_column("ratio", justify="right")
    k_last = cfg.variants[-1]
    for conc in (1, cfg.concurrency):
        a, b = by[f"triton t2i_k0 c={conc}"], by[f"triton {ensemble_name(k_last)} c={conc}"]
        ratios.add_row(f"throughput {ensemble_name(k_last)} / t2i_k0 (c={conc})", f"{b.images_per_s / a.images_per_s:.2f}x")
    for variant in cfg.variants:
        t, p = by[f"triton {ensemble_name(variant)} c=1"], by[f"in-process {variant} c=1"]
        ratios.add_row(f"Triton overhead {variant}: p50 latency Triton / in-process (c=1)", f"{t.pct_ms(50) / p.pct_ms(50):.2f}x")
    ratios.add_row(f"throughput gain from concurrency {cfg.concurrency} (t2i_k0, dynamic batching)",
                   f"{by[f'triton t2i_k0 c={cfg.concurrency}'].images_per_s / by['triton t2i_k0 c=1'].images_per_s:.2f}x")
    if console:
        console.print(table)
        console.print(ratios)
    return cells
