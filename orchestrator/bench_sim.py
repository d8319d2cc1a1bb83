"""``argus bench sim``: every policy on the same trace in the simulator, plus an offline oracle.

The oracle is an upper bound on quality at zero SLO violations: per window of ``window_s``, an LP
(HiGHS) gives each request a fractional mix of the variants available to it, maximising true
relative quality subject to the window's worker-seconds; it ignores queueing inside a window, so
no online policy can beat it. Requests the whole cluster cannot serve even at the fastest
variants are counted as its unavoidable violations.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path


from orchestrator.policies import PolicyContext, PromptClasses, make_policy
from orchestrator.predictor import QualityPredictor
from orchestrator.profile import Profile
from orchestrator.simulator import SimConfig, Simulator, summarize
from orchestrator.workload import Request, load_trace, real_prompts, request_stream, scale_to_peak, world_prompt_stream

POLICY_NAMES = ("argus", "clipper-ha", "clipper-ht", "nirvana", "proteus")


@dataclasses.dataclass
class SimBenchConfig:
    profile_path: Path
    trace: str = "twitter"
    num_workers: int = 8
    peak_load: float = 1.5
    """Peak offered load as a multiple of the cluster's k0 capacity (from the profile)."""
    duration_s: float | None = None
    """Compress the trace to this length (None: keep its own)."""
    slo_factor: float = 2.0
    """SLO = slo_factor x the k0 batch-1 latency."""
    plan_interval_s: float | None = None
    """None: 2x the k0 batch-1 latency."""
    seed: int = 0
    prompts: str = "world"
    """'world': the embedded world's stream (popular templates, users iterating: heavy reuse);
    'diffusiondb': the 5,000 real DiffusionDB prompts in order, cycled (13% exact repeats)."""
    out_dir: Path | None = None


def oracle(profile: Profile, sim: Simulator, requests: list[Request], num_workers: int, window_s: float) -> dict:
    import highspy

    variants = list(profile.variants)
    cost = {v: profile.variants[v].latency_ms[max(profile.variants[v].latency_ms)] / 1000.0 / max(profile.variants[v].latency_ms) for v in variants}
    total_q, served, dropped = 0.0, 0.0, 0.0
    i = 0
    while i < len(requests):
        w_end = requests[i].arrival_s - requests[i].arrival_s % window_s + window_s
        batch = []
        while i < len(requests) and requests[i].arrival_s < w_end:
            feats, truth = sim.features(requests[i])
            batch.append((feats.available, truth))
            i += 1
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        xs, drop, obj, cap = [], [], 0, 0
        for avail, truth in batch:
            row = [h.addVariable(lb=0.0, ub=1.0) if v in avail else None for v in variants]
            d = h.addVariable(lb=0.0, ub=1.0)
            h.addConstr(sum(x for x in row if x is not None) + d == 1.0)
            obj = obj + sum(truth[v] * x for v, x in zip(variants, row) if x is not None) - 100.0 * d
            cap = cap + sum(cost[v] * x for v, x in zip(variants, row) if x is not None)
            xs.append(row)
            drop.append(d)
        h.addConstr(cap <= num_workers * window_s)
        h.maximize(obj)
        for (avail, truth), row, d in zip(batch, xs, drop):
            dv = h.val(d)
            dropped += dv
            served += 1 - dv
            total_q += sum(truth[v] * h.val(x) for v, x in zip(variants, row) if x is not None)
    n = len(requests)
    return {"slo_violation_pct": 100.0 * dropped / max(n, 1), "mean_quality": total_q / max(served, 1e-9), "requests": n}


def run_sim_bench(cfg: SimBenchConfig, console=None) -> dict:
    from rich.table import Table

    profile = Profile.load(cfg.profile_path)
    k0 = profile.variants["k0"]
    slo_ms = cfg.slo_factor * k0.latency_ms[1]
    capacity = cfg.num_workers * k0.throughput(slo_ms)
    trace = load_trace(cfg.trace, seed=cfg.seed)
    trace = scale_to_peak(trace, cfg.peak_load * capacity, cfg.duration_s, window_s=max(1.0, 2 * k0.latency_ms[1] / 1000.0))
    prompts = world_prompt_stream(len(trace.arrivals_s), seed=cfg.seed) if cfg.prompts == "world" else real_prompts(cfg.prompts)
    requests = request_stream(trace, prompts, slo_ms, seed=cfg.seed)
    predictor = QualityPredictor.fit(profile.quality)
    classes = PromptClasses.fit(profile.quality.embeddings, k=8)
    interval = cfg.plan_interval_s or 2 * k0.latency_ms[1] / 1000.0
    rows = {}
    for name in POLICY_NAMES:
        t = time.perf_counter()
        policy = make_policy(name, PolicyContext(profile, predictor, classes, slo_ms))
        recs = Simulator(profile, policy, SimConfig(num_workers=cfg.num_workers, plan_interval_s=interval, max_batch=max(k0.latency_ms))).run(requests)
        rows[name] = {**summarize(recs, trace.duration_s), "sim_wall_s": time.perf_counter() - t}
    policy = make_policy("clipper-ha", PolicyContext(profile, predictor, classes, slo_ms))
    rows["oracle (offline bound)"] = oracle(profile, Simulator(profile, policy, SimConfig(cfg.num_workers)), requests, cfg.num_workers, interval)
    result = {"trace": trace.name, "prompts": cfg.prompts, "requests": len(requests), "duration_s": trace.duration_s, "workers": cfg.num_workers, "slo_ms": slo_ms,
              "k0_capacity_rps": capacity, "profile": str(cfg.profile_path), "rows": rows}
    if cfg.out_dir:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        (cfg.out_dir / "sim_summary.json").write_text(json.dumps(result, indent=2) + "\n")
    if console:
        table = Table(title=f"simulated: {trace.name}, {cfg.prompts} prompts, {len(requests)} requests over {trace.duration_s:.0f} s, {cfg.num_workers} workers, "
                            f"SLO {slo_ms / 1000:.2f} s, k0 capacity {capacity:.2f} req/s")
        for col in ("policy", "SLO violations %", "mean rel. quality", "goodput req/s", "throughput req/s", "shed %", "sim wall s"):
            table.add_column(col, justify="right")
        for name, r in rows.items():
            table.add_row(name, f"{r['slo_violation_pct']:.2f}", f"{r['mean_quality']:.3f}", f"{r.get('goodput_rps', float('nan')):.3f}",
                          f"{r.get('throughput_rps', float('nan')):.3f}", f"{r.get('shed_pct', float('nan')):.2f}", f"{r.get('sim_wall_s', 0):.1f}")
        console.print(table)
    return result
