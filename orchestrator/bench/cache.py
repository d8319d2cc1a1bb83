"""Cache benchmark: retrieval latency and throughput at 10k and 100k entries, memory per entry,
all against one t2i_k25 generation measured in the same run on the same machine.

The cache is filled through the store (persisted to SQLite), then served by a real tritonserver
that loads it at start-up; retrieval is timed through Triton over gRPC, as the orchestrator calls it.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from orchestrator.triton import cache as cache_client
from triton_backend.cache_store import CacheConfig, LatentCache
from orchestrator.triton.client import generate
from orchestrator.triton.repository import RepositoryConfig, models_to_load, write_repository
from orchestrator.triton.server import TritonConfig, TritonServer
from tiny_model.models import LATENT_CHANNELS, LATENT_SIZE, POOLED_DIM


@dataclasses.dataclass
class CacheBenchConfig:
    sizes: tuple[int, ...] = (10_000, 100_000)
    queries: int = 400
    grpc_port: int = 18401


def _fill(directory: Path, n: int, levels: tuple[int, ...]) -> dict:
    """Fill a persisted cache with n entries; returns memory per entry measured in-process."""
    rng = np.random.RandomState(0)
    before = _rss_bytes()
    cache = LatentCache(CacheConfig(levels=levels, byte_budget=2**40, persist_dir=directory))
    latent_shape = (LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    t = time.perf_counter()
    for i in range(n):
        lat = rng.randn(len(levels), *latent_shape).astype(np.float32)
        cache.insert(rng.randn(POOLED_DIM).astype(np.float32), dict(zip(levels, lat)))
    insert_s = time.perf_counter() - t
    rss = _rss_bytes() - before
    in_process = _time_retrievals(lambda e: cache.retrieve(e, 25), rng, 2000)
    cache.close()
    return {"insert_per_s": n / insert_s, "rss_bytes_per_entry": rss / n, "store_bytes_per_entry": cache.bytes / n, "in_process": in_process}


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _time_retrievals(fn, rng, n: int) -> dict:
    lat = []
    for _ in range(n):
        e = rng.randn(1, POOLED_DIM).astype(np.float32)
        t = time.perf_counter()
        fn(e)
        lat.append(time.perf_counter() - t)
    lat_ms = 1000 * np.array(lat)
    return {"p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)), "per_s": n / (lat_ms.sum() / 1000)}


def run_cache_bench(cfg: CacheBenchConfig, console=None) -> dict:
    from rich.table import Table

    log = console.print if console else print
    repo_cfg = RepositoryConfig(cache_byte_budget=2**40)
    levels = tuple(k for k in sorted(repo_cfg.step_skip_levels) if k > 0)
    rng = np.random.RandomState(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_repository(repo_cfg, repo)
        for n in cfg.sizes:
            cache_dir = Path(tmp) / f"cache{n}"
            log(f"filling {n} entries ...")
            fill = _fill(cache_dir, n, levels)
            models = ("cache_retrieval",) + (tuple(models_to_load(repo_cfg, ["k25"])) if n == cfg.sizes[0] else ())
            tcfg = TritonConfig(model_repository=repo, grpc_port=cfg.grpc_port, http_port=cfg.grpc_port - 1, metrics_port=cfg.grpc_port + 1,
                                load_models=models, cache_dir=cache_dir, ready_timeout_s=600)
            with TritonServer(tcfg) as server:
                client = grpcclient.InferenceServerClient(server.config.grpc_url)
                via_triton = _time_retrievals(lambda e: cache_client.lookup(client, e, 25), rng, cfg.queries)
                if n == cfg.sizes[0]:
                    start = np.zeros((1, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE), np.float32)
                    generate(client, ["warm up"], [0], "k25", start)
                    gen = []
                    for i in range(8):
                        t = time.perf_counter()
                        generate(client, ["a large red circle on the left"], [i], "k25", start)
                        gen.append(time.perf_counter() - t)
                    results["t2i_k25_p50_ms"] = 1000 * float(np.median(gen))
            results[n] = {**fill, "triton": via_triton}
            log(f"{n}: triton p99 {via_triton['p99_ms']:.2f} ms")
    k25 = results["t2i_k25_p50_ms"]
    table = Table(title=f"cache retrieval (one t2i_k25 generation: {k25:.0f} ms p50, same run)")
    for col in ("entries", "path", "p50 ms", "p99 ms", "retrievals/s", "p99 / t2i_k25", "bytes/entry (store)", "RSS bytes/entry"):
        table.add_column(col, justify="right")
    for n in cfg.sizes:
        r = results[n]
        for path in ("triton", "in_process"):
            m = r[path]
            table.add_row(f"{n:,}", path, f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}", f"{m['per_s']:.0f}", f"{100 * m['p99_ms'] / k25:.2f}%",
                          f"{r['store_bytes_per_entry']:.0f}", f"{r['rss_bytes_per_entry']:.0f}")
    if console:
        console.print(table)
    return results
