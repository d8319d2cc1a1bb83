"""Set-up shared by the benches: the request stream every policy replays, and the simulated rows."""

from __future__ import annotations

import dataclasses
import time

from orchestrator.policy.base import PolicyContext
from orchestrator.policy.registry import make_policy
from orchestrator.profile.schema import Profile
from orchestrator.sim.simulator import SimConfig, Simulator, summarize
from orchestrator.sim.workload import PromptSource, Request, Trace, TraceSource, load_prompts, load_trace, request_stream, scale_to_peak


@dataclasses.dataclass(frozen=True)
class Workload:
    trace: Trace
    requests: list[Request]
    slo_ms: float
    capacity_rps: float
    """The workers' k0 capacity at the SLO, which ``peak_load`` multiplies."""


def build_workload(profile: Profile, trace: str | TraceSource, num_workers: int, peak_load: float, duration_s: float | None,
                   prompts: str | PromptSource,
                   slo_factor: float = 2.0, seed: int = 0) -> Workload:
    """Trace scaled so its peak is ``peak_load`` x the cluster's k0 capacity, SLO = ``slo_factor`` x
    the k0 batch-of-one latency, prompts in order; seeded, so live and simulated runs replay the same stream."""
    k0 = profile.variants["k0"]
    slo_ms = slo_factor * k0.latency_ms[1]
    capacity = num_workers * k0.throughput(slo_ms)
    scaled = scale_to_peak(load_trace(trace, seed=seed), peak_load * capacity, duration_s, window_s=max(1.0, 2 * k0.latency_ms[1] / 1000.0))
    stream = load_prompts(prompts, len(scaled.arrivals_s), seed=seed)
    return Workload(scaled, request_stream(scaled, stream, slo_ms, seed=seed), slo_ms, capacity)


def simulate(profile: Profile, requests: list[Request], num_workers: int, policies: tuple[str, ...], duration_s: float,
             slo_ms: float) -> dict[str, dict]:
    """Each policy on the same requests in the simulator: its table row plus its wall time."""
    ctx = PolicyContext.build(profile, slo_ms)
    rows = {}
    for name in policies:
        t = time.perf_counter()
        sim = Simulator(profile, make_policy(name, ctx), SimConfig(num_workers, max_batch=max(profile.variants["k0"].latency_ms)))
        rows[name] = {**summarize(sim.run(requests), duration_s), "sim_wall_s": time.perf_counter() - t}
    return rows
