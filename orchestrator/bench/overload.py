"""``argus bench overload``: the share of requests served within the SLO under a burst far above capacity.

The reliability test (``tests/triton/test_reliability.py``) checks what must always hold under 5x the
k0 capacity for 60 s: the in-flight bound, immediate refusals with a retry hint, flat memory, the
recovery. How many of the served requests meet their SLO is a speed figure that depends on how
loaded the machine is, so it is measured here and printed, never asserted in a test.

Open-loop arrivals at ``factor`` x the k0 throughput at the SLO (3x the k0 latency: the front door's
own encoding and cache lookup share the cores), through a real front door (argus by default) on a
real tritonserver; prompts cycle over ``distinct_prompts`` captions, so the cache can serve repeats.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np

from orchestrator.paths import CPU_PROFILE


@dataclasses.dataclass
class OverloadBenchConfig:
    factor: float = 5.0
    """Arrival rate as a multiple of the k0 throughput at the SLO."""
    duration_s: float = 60.0
    slo_factor: float = 3.0
    """SLO = this x the k0 batch-of-one latency."""
    max_queue: int = 4
    """The front door's admission bound (requests in flight)."""
    distinct_prompts: int = 40
    policy: str = "argus"
    profile_path: Path = CPU_PROFILE
    worker: str | None = None
    """gRPC url of a running tritonserver with the whole repository; None starts one."""
    grpc_port: int = 18741
    frontdoor_port: int = 18750
    seed: int = 0


def run_overload_bench(cfg: OverloadBenchConfig, log=print) -> dict:
    """One JSON object: what was sent, served, refused, and the share of served (and of sent)
    requests answered within the SLO, with the front door's peak in flight."""
    import random

    import tritonclient.grpc as grpcclient

    from orchestrator.bench.common import triton_worker
    from orchestrator.profile.schema import Profile
    from orchestrator.serve.config import FrontDoorConfig
    from orchestrator.serve.frontdoor import serve
    from orchestrator.triton.client import infer_input
    from tiny_model.world import sample_scene

    profile = Profile.load(cfg.profile_path)
    slo_ms = cfg.slo_factor * profile.variants["k0"].latency_ms[1]
    rate = cfg.factor * profile.variants["k0"].throughput(slo_ms)
    rng = random.Random(cfg.seed)
    prompts = [sample_scene(rng).caption() for _ in range(cfg.distinct_prompts)]
    results: list[tuple[str, float]] = []  # (outcome, seconds)
    lock = threading.Lock()
    with triton_worker(cfg.worker, cfg.grpc_port, "overload_bench_tritonserver.log") as worker:
        fd = FrontDoorConfig.for_measurement(worker, cfg.profile_path, cfg.policy, cfg.frontdoor_port, default_slo_ms=slo_ms,
                                             max_queue=cfg.max_queue)
        door, engine = serve(fd)

        def send(i: int) -> None:
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{cfg.frontdoor_port}")
            inputs = [infer_input("PROMPT", np.array([prompts[i % len(prompts)].encode()], dtype=np.object_), "BYTES"),
                      infer_input("SEED", np.array([cfg.seed + i], dtype=np.int64), "INT64")]
            t0 = time.monotonic()
            try:
                client.infer("t2i", inputs, client_timeout=120.0)
                outcome = "ok"
            except grpcclient.InferenceServerException as e:
                outcome = "refused" if "RESOURCE_EXHAUSTED" in str(e.status()) else f"error: {e.status()}"
            finally:
                client.close()
            with lock:
                results.append((outcome, time.monotonic() - t0))

        try:
            threads, t0, i = [], time.monotonic(), 0
            while time.monotonic() - t0 < cfg.duration_s:
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                th = threading.Thread(target=send, args=(i,), daemon=True)
                th.start()
                threads.append(th)
                i += 1
            for th in threads:
                th.join(timeout=180)
            peak = engine.peak_in_flight
        finally:
            door.stop(0)
            engine.close()
    ok = [s for o, s in results if o == "ok"]
    within = sum(s * 1000.0 <= slo_ms for s in ok)
    out = {
        "rate_rps": rate, "slo_ms": slo_ms, "sent": i, "served": len(ok), "refused": sum(o == "refused" for o, _ in results),
        "errors": sum(o.startswith("error") for o, _ in results), "within_slo_share_of_served": within / max(len(ok), 1),
        "within_slo_share_of_sent": within / max(i, 1), "peak_in_flight": peak,
    }
    log(f"{cfg.policy} at {cfg.factor:g}x the k0 capacity ({rate:.2f} req/s) for {cfg.duration_s:g} s: sent {i}, served {len(ok)} "
        f"({100 * out['within_slo_share_of_served']:.0f}% of them within the {slo_ms:.0f} ms SLO), refused {out['refused']}, "
        f"peak in flight {peak}")
    return out
