"""``argus bench sim``: every policy on the same trace in the simulator, plus the offline oracle
(``orchestrator.sim.oracle``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from orchestrator.bench.common import build_workload, simulate
from orchestrator.paths import paper_scale_profile
from orchestrator.policy.base import default_plan_interval_s
from orchestrator.policy.registry import policy_names
from orchestrator.profile.schema import Profile
from orchestrator.sim.oracle import oracle
from orchestrator.sim.workload import PromptSource, TraceSource, source_name


@dataclasses.dataclass
class SimBenchConfig:
    profile_path: Path | None = None
    """None: a measured SD-XL GPU profile where one is committed, else the cited A100 one."""
    trace: str | TraceSource = "twitter"
    num_workers: int = 8
    peak_load: float = 1.5
    """Peak offered load as a multiple of the cluster's k0 capacity (from the profile)."""
    duration_s: float | None = None
    """Compress the trace to this length (None: keep its own)."""
    slo_factor: float = 2.0
    """SLO = slo_factor x the k0 batch-1 latency."""
    seed: int = 0
    prompts: str | PromptSource = "world"
    """'world': the embedded world's stream (popular templates, users iterating: heavy reuse);
    'diffusiondb': the 5,000 real DiffusionDB prompts in order, cycled (13% exact repeats)."""
    out_dir: Path | None = None


def run_sim_bench(cfg: SimBenchConfig, console=None) -> dict:
    from rich.table import Table

    if cfg.profile_path is None:
        cfg = dataclasses.replace(cfg, profile_path=paper_scale_profile())
    profile = Profile.load(cfg.profile_path)
    wl = build_workload(profile, cfg.trace, cfg.num_workers, cfg.peak_load, cfg.duration_s, cfg.prompts, cfg.slo_factor, cfg.seed)
    trace, requests, slo_ms, capacity = wl.trace, wl.requests, wl.slo_ms, wl.capacity_rps
    rows = simulate(profile, requests, cfg.num_workers, policy_names(), trace.duration_s, slo_ms, wl.make_world, pair=wl.pair)
    rows["oracle (offline bound)"] = oracle(profile, requests, cfg.num_workers, default_plan_interval_s(profile), wl.make_world())
    result = {"trace": trace.name, "prompts": source_name(cfg.prompts), "requests": len(requests), "duration_s": trace.duration_s, "workers": cfg.num_workers, "slo_ms": slo_ms,
              "k0_capacity_rps": capacity, "profile": str(cfg.profile_path), "cache_similarity": wl.similarity, "warm_prompts": len(wl.warm_prompts),
              "rows": rows}
    if cfg.out_dir:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        (cfg.out_dir / "sim_summary.json").write_text(json.dumps(result, indent=2) + "\n")
    if console:
        table = Table(title=f"simulated: {trace.name}, {source_name(cfg.prompts)} prompts, {len(requests)} requests over {trace.duration_s:.0f} s, {cfg.num_workers} workers, "
                            f"SLO {slo_ms / 1000:.2f} s, k0 capacity {capacity:.2f} req/s; cache similarity: {wl.similarity}")
        for col in ("policy", "SLO violations %", "mean rel. quality", "goodput req/s", "throughput req/s", "shed %", "sim wall s"):
            table.add_column(col, justify="right")
        for name, r in rows.items():
            table.add_row(name, f"{r['slo_violation_pct']:.2f}", f"{r['mean_quality']:.3f}", f"{r.get('goodput_rps', float('nan')):.3f}",
                          f"{r.get('throughput_rps', float('nan')):.3f}", f"{r.get('shed_pct', float('nan')):.2f}", f"{r.get('sim_wall_s', 0):.1f}")
        console.print(table)
    return result
