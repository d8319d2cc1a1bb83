"""The planner: how many workers run each model family and which variant each prompt class gets.

A small mixed-integer program, solved with HiGHS, every few seconds and on load change:

    maximise    sum_c pi_c sum_v f_cv q_cv  -  P_shed sum_c pi_c shed_c  -  P_switch sum_m |n_m - n_m^prev| load_time_m
    subject to  sum_m n_m <= W                                   (workers; n_m integer)
                sum_v f_cv + shed_c = 1                          (every class is fully assigned)
                0 <= f_cv <= a_cv                                (K variants only where the cache can serve them)
                sum_{v in m} sum_c lambda pi_c f_cv h / mu_v <= n_m   (each family's workers keep up with its demand)

c: prompt classes (clusters of prompt embeddings), v: variants, m: model families (all K variants
share the base model's weights, so a base worker serves any K and switching K is free; the fast
model is another family whose load costs ``load_time_s``), pi_c: class mix, q_cv: predicted relative
quality, a_cv: fraction of class c whose cache similarity clears K's threshold, lambda: forecast
demand (req/s), h: headroom, mu_v: one worker's throughput for v at the SLO.

When demand exceeds what every worker running the fastest variants can do, the shed variables
take the excess, so the plan degrades gracefully instead of being infeasible.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

MIN_CLASS_SHARE = 1e-6
"""Classes with a smaller share of the mix are left out of the program (they still get a plan row)."""
SHED_PENALTY = 10.0
"""Per unit of shed demand; larger than any quality gain (relative quality <= ~1.5)."""


@dataclasses.dataclass
class PlanInput:
    demand_rps: float
    class_mix: np.ndarray  # (C,) sums to 1
    quality: np.ndarray  # (C, V) predicted relative quality
    availability: np.ndarray  # (C, V) max fraction of the class that can use the variant
    throughput_rps: np.ndarray  # (V,) one worker's sustainable throughput at the SLO
    family: list[str]  # (V,) model family of each variant
    variants: list[str]
    num_workers: int
    load_time_s: dict[str, float]  # family -> cost of bringing it up on a worker
    previous_workers: dict[str, int] | None = None
    headroom: float = 1.2
    switch_penalty_per_s: float = 0.002


@dataclasses.dataclass
class Plan:
    workers: dict[str, int]  # family -> workers
    fractions: np.ndarray  # (C, V)
    shed: np.ndarray  # (C,)
    expected_quality: float  # mean relative quality of served requests
    demand_rps: float
    capacity_rps: float  # what the allocation can serve with the planned mix
    solve_ms: float
    status: str
    variants: list[str]

    def target(self, cls: int) -> dict[str, float]:
        return {v: float(f) for v, f in zip(self.variants, self.fractions[cls]) if f > 1e-6}


SMALL_COEF = 1e-7


def solve(inp: PlanInput) -> Plan:
    import highspy

    t0 = time.perf_counter()
    c_count, v_count = inp.quality.shape
    # HiGHS refuses rows with coefficients below its small-value tolerance: drop negligible classes.
    mix = np.where(inp.class_mix < MIN_CLASS_SHARE, 0.0, inp.class_mix)
    mix = mix / mix.sum() if mix.sum() > 0 else np.full(c_count, 1.0 / c_count)
    inp = dataclasses.replace(inp, class_mix=mix)
    families = sorted(set(inp.family))
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 1e-4)
    h.setOptionValue("time_limit", 2.0)
    n = {m: h.addVariable(lb=0, ub=inp.num_workers, type=highspy.HighsVarType.kInteger, name=f"n_{m}") for m in families}
    f = [[h.addVariable(lb=0.0, ub=float(max(0.0, min(1.0, inp.availability[c, v]))), name=f"f_{c}_{v}") for v in range(v_count)] for c in range(c_count)]
    shed = [h.addVariable(lb=0.0, ub=1.0, name=f"shed_{c}") for c in range(c_count)]
    prev = inp.previous_workers or {}
    d = {m: h.addVariable(lb=0.0, ub=inp.num_workers, name=f"d_{m}") for m in families}

    h.addConstr(sum(n.values()) <= inp.num_workers)
    for c in range(c_count):
        h.addConstr(sum(f[c]) + shed[c] == 1.0)
    for m in families:
        coef = {(c, v): inp.demand_rps * inp.class_mix[c] * inp.headroom / max(inp.throughput_rps[v], 1e-9)
                for c in range(c_count) for v in range(v_count) if inp.family[v] == m and inp.class_mix[c] > 0}
        # Worker shares below HiGHS's small-value tolerance are dropped (near-zero demand).
        load = sum(float(a) * f[c][v] for (c, v), a in coef.items() if a >= SMALL_COEF)
        h.addConstr(load - n[m] <= 0.0)
        if inp.previous_workers is not None:  # a family absent before had 0 workers: adding one loads it
            h.addConstr(d[m] - n[m] >= -prev.get(m, 0))
            h.addConstr(d[m] + n[m] >= prev.get(m, 0))
    objective = sum(float(inp.class_mix[c] * inp.quality[c, v]) * f[c][v] for c in range(c_count) for v in range(v_count) if inp.class_mix[c] > 0)
    objective = objective - sum(SHED_PENALTY * float(inp.class_mix[c]) * shed[c] for c in range(c_count) if inp.class_mix[c] > 0)
    if inp.previous_workers is not None:
        objective = objective - sum(inp.switch_penalty_per_s * inp.load_time_s.get(m, 0.0) * d[m] for m in families)
    h.maximize(objective)
    status = h.modelStatusToString(h.getModelStatus())
    fr = np.array([[h.val(f[c][v]) for v in range(v_count)] for c in range(c_count)])
    sh = np.array([h.val(s) for s in shed])
    workers = {m: int(round(h.val(n[m]))) for m in families}
    served = 1.0 - float(inp.class_mix @ sh)
    quality = float((inp.class_mix[:, None] * fr * inp.quality).sum() / served) if served > 1e-9 else 0.0
    # Capacity of the allocation for the planned mix: demand scaled until a family saturates.
    cap = []
    for m in families:
        per_req = sum(inp.class_mix[c] * fr[c, v] / max(inp.throughput_rps[v], 1e-9) for c in range(c_count) for v in range(v_count) if inp.family[v] == m)
        if per_req > 1e-12:
            cap.append(workers[m] / per_req)
    return Plan(workers, fr, sh, quality, inp.demand_rps, min(cap) if cap else 0.0, 1000 * (time.perf_counter() - t0), status, list(inp.variants))
