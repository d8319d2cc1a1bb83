"""``argus bench frontdoor``: what the front door adds to a generation, under concurrent load.

Three phases, each ``concurrency`` clients in a closed loop through a real front door on a real
tritonserver: new prompts under clipper-ha (k0), the same prompts again under nirvana (each finds
its own cached latent: k25), and clipper-ht (fast). For every answer the front door reports the wall
time of its generation call to Triton (``generation_ms``) and how many Triton calls the request made
(``triton_calls``); the overhead is the client's latency minus that generation time and the time it
waited at the dispatch gate for the worker's earlier batches (``queued_ms``: the worker's queue,
which without the gate is spent inside Triton, in the generation call): the probe, the decision,
the bookkeeping and both gRPC hops.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np

from orchestrator.paths import CPU_PROFILE


@dataclasses.dataclass
class FrontdoorBenchConfig:
    requests_per_phase: int = 48
    concurrency: int = 4
    profile_path: Path = CPU_PROFILE
    worker: str | None = None
    """gRPC url of a running tritonserver with the whole repository; None starts one."""
    grpc_port: int = 18721
    frontdoor_port: int = 18730
    seed: int = 0


@dataclasses.dataclass
class Answer:
    variant: str
    latency_ms: float
    generation_ms: float
    triton_calls: int
    queued_ms: float = 0.0


def _phase(policy: str, prompts: list[str], cfg: FrontdoorBenchConfig, worker: str, log) -> list[Answer]:
    """A fresh front door under ``policy``; ``concurrency`` clients each send their share in turn."""
    import tritonclient.grpc as grpcclient

    from orchestrator.serve.config import FrontDoorConfig
    from orchestrator.serve.frontdoor import serve
    from orchestrator.triton.client import infer_input

    fd = FrontDoorConfig.for_measurement(worker, cfg.profile_path, policy, cfg.frontdoor_port, default_slo_ms=60_000.0)
    server, engine = serve(fd)
    answers: list[Answer] = []
    lock = threading.Lock()

    def client_loop(mine: list[tuple[int, str]]) -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{cfg.frontdoor_port}")
        for seed, prompt in mine:
            inputs = [infer_input("PROMPT", np.array([prompt.encode()], dtype=np.object_), "BYTES"),
                      infer_input("SEED", np.array([seed], dtype=np.int64), "INT64")]
            t0 = time.perf_counter()
            res = client.infer("t2i", inputs)
            latency_ms = 1000.0 * (time.perf_counter() - t0)
            p = res.get_response().parameters
            with lock:
                answers.append(Answer(p["variant"].string_param, latency_ms, float(p["generation_ms"].string_param),
                                      int(p["triton_calls"].string_param), float(p["queued_ms"].string_param)))
        client.close()

    try:
        jobs = list(enumerate(prompts, start=cfg.seed))
        threads = [threading.Thread(target=client_loop, args=(jobs[i :: cfg.concurrency],)) for i in range(cfg.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop(0)
        engine.close()
    log(f"{policy}: {len(answers)} answers, variants {sorted({a.variant for a in answers})}")
    return answers


def run_frontdoor_bench(cfg: FrontdoorBenchConfig, log=print) -> dict:
    """The issue's JSON object: overhead p50/p99, the k25 generation p50 of the same run, calls per request by variant."""
    import random

    from orchestrator.bench.common import triton_worker
    from tiny_model.world import sample_scene

    rng = random.Random(cfg.seed)
    prompts = [sample_scene(rng).caption() for _ in range(cfg.requests_per_phase)]
    with triton_worker(cfg.worker, cfg.grpc_port, "frontdoor_bench_tritonserver.log") as worker:
        answers = (_phase("clipper-ha", prompts, cfg, worker, log)  # k0, and every answer's step latents are cached
                   + _phase("nirvana", prompts, cfg, worker, log)  # the same prompts: their own latents, k25
                   + _phase("clipper-ht", prompts, cfg, worker, log))
    overhead = np.array([a.latency_ms - a.generation_ms - a.queued_ms for a in answers])
    k25 = [a.generation_ms for a in answers if a.variant == "k25"]
    calls: dict[str, list[int]] = {}
    for a in answers:
        calls.setdefault(a.variant, []).append(a.triton_calls)
    return {
        "overhead_ms_p50": float(np.percentile(overhead, 50)),
        "overhead_ms_p99": float(np.percentile(overhead, 99)),
        "k25_generation_ms_p50": float(np.percentile(k25, 50)) if k25 else None,
        "grpc_calls_per_request": {v: float(np.mean(c)) for v, c in sorted(calls.items())},
    }
