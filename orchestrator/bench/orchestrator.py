"""``argus bench orchestrator``: per-request decision overhead and the planner's solve time.

Decision overhead is everything the orchestrator adds per request besides Triton calls: class
assignment, quality prediction, routing, bookkeeping (``ClusterState.apply``). The planner is
timed at 8 and 64 workers with the profile's classes and variants.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from orchestrator.policy.base import PolicyContext, default_plan_interval_s
from orchestrator.policy.control import ControlInput
from orchestrator.policy.registry import make_policy
from orchestrator.policy.router import ClusterState, WorkerState
from orchestrator.profile.schema import Profile


def run_orchestrator_bench(profile_path: Path, requests: int = 5000, console=None) -> dict:
    from rich.table import Table

    profile = Profile.load(profile_path)
    slo = 2 * profile.variants["k0"].latency_ms[1]
    ctx = PolicyContext.build(profile, slo)
    classes = ctx.classes
    rng = np.random.default_rng(0)
    table = profile.quality
    out: dict = {}
    for workers in (8, 64):
        policy = make_policy("argus", ctx)
        solve_ms = []
        for load in (0.5, 1.0, 1.5, 3.0):
            demand = load * workers * profile.variants["k0"].throughput(slo)
            t = time.perf_counter()
            plan = policy.replan(ControlInput(demand, np.full(len(classes), 1 / len(classes)), workers, None,
                                              np.full((len(classes), len(policy.variants)), np.nan), default_plan_interval_s(profile)))
            solve_ms.append(1000 * (time.perf_counter() - t))
        fams = [f for f, n in plan.workers.items() for _ in range(n)] or ["base"] * workers
        state = ClusterState([WorkerState(f"w{i}", f) for i, f in enumerate(fams)], np.zeros((len(classes), len(policy.variants))))
        lat = []
        for i in range(requests):
            row = int(rng.integers(len(table.prompts)))
            t = time.perf_counter()
            emb = table.embeddings[row]
            sims = {v: float(s[row]) for v, s in table.similarity.items()}
            feats = ctx.features(f"r{i}", 0.0, slo, emb, sims, frozenset(policy.variants))
            policy.decide(feats, state, 0.0)
            lat.append(time.perf_counter() - t)
        lat_us = 1e6 * np.array(lat)
        out[workers] = {"decision_p50_us": float(np.percentile(lat_us, 50)), "decision_p99_us": float(np.percentile(lat_us, 99)),
                        "solve_ms_median": float(np.median(solve_ms)), "solve_ms_max": float(np.max(solve_ms))}
    if console:
        t = Table(title=f"orchestrator overhead ({requests} decisions per cluster size; profile {profile_path})")
        for col in ("workers", "decision p50 us", "decision p99 us", "planner solve ms (median)", "planner solve ms (max)"):
            t.add_column(col, justify="right")
        for w, r in out.items():
            t.add_row(str(w), f"{r['decision_p50_us']:.0f}", f"{r['decision_p99_us']:.0f}", f"{r['solve_ms_median']:.1f}", f"{r['solve_ms_max']:.1f}")
        console.print(t)
    return out
