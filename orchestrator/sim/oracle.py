"""The offline oracle: an upper bound on quality at zero SLO violations.

Per window of ``window_s``, an LP (HiGHS) gives each request a fractional mix of the variants
available to it (a K variant from the best of the cache's candidates, whatever its similarity),
maximising true relative quality subject to the window's worker-seconds; it ignores queueing inside a window, so no online policy can beat it. Requests the whole cluster
cannot serve even at the fastest variants are counted as its unavoidable violations.
"""

from __future__ import annotations

import math

from orchestrator.profile.schema import Profile
from orchestrator.sim.workload import Request
from orchestrator.sim.world import TableWorld, World

DROP_PENALTY = 100.0
"""Per dropped request: far above any quality gain, so the LP drops only what cannot fit."""


def worker_seconds_per_image(profile: Profile) -> dict[str, float]:
    """Each variant's cost at its largest profiled batch (the oracle's best case)."""
    return {v: vp.latency_ms[max(vp.latency_ms)] / 1000.0 / max(vp.latency_ms) for v, vp in profile.variants.items()}


def _windows(world: World, profile: Profile, requests: list[Request], window_s: float):
    """Requests grouped by window index ``floor(arrival / window_s)``: every request lands in exactly
    one window and every window holds at least one, whatever the float arithmetic (an end computed as
    ``t - t % w + w`` can equal ``t`` for large ``t``, leaving a window empty and the loop stuck)."""
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    batch, current = [], None
    for req in requests:
        index = math.floor(req.arrival_s / window_s)
        if batch and index != current:
            yield batch
            batch = []
        current = index
        view = world.observe(req.prompt, req.arrival_s)
        best = world.best_truth(req.prompt, view)  # any candidate, whatever its similarity, as argus may resume from
        avail = profile.available_variants(view.similarity) | frozenset(best)
        truth = {v: max(q, best.get(v, q)) for v, q in view.truth.items()}
        world.served(req.prompt, "k0", req.arrival_s)  # the bound: every request leaves all its latents
        batch.append((avail, truth))
    if batch:
        yield batch


def oracle(profile: Profile, requests: list[Request], num_workers: int, window_s: float, world: World | None = None) -> dict:
    import highspy

    world = world or TableWorld(profile)
    variants = list(profile.variants)
    cost = worker_seconds_per_image(profile)
    total_q, served, dropped = 0.0, 0.0, 0.0
    for batch in _windows(world, profile, requests, window_s):
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        xs, drop, obj, cap = [], [], 0, []
        for avail, truth in batch:
            row = [h.addVariable(lb=0.0, ub=1.0) if v in avail else None for v in variants]
            d = h.addVariable(lb=0.0, ub=1.0)
            h.addConstr(sum(x for x in row if x is not None) + d == 1.0)
            obj = obj + sum(truth[v] * x for v, x in zip(variants, row) if x is not None) - DROP_PENALTY * d
            cap += [cost[v] * x for v, x in zip(variants, row) if x is not None]
            xs.append(row)
            drop.append(d)
        if cap:  # a window whose requests have no servable variant has no capacity row to add
            h.addConstr(sum(cap) <= num_workers * window_s)
        h.maximize(obj)
        for (avail, truth), row, d in zip(batch, xs, drop):
            dv = h.val(d)
            dropped += dv
            served += 1 - dv
            q = sum(truth[v] * h.val(x) for v, x in zip(variants, row) if x is not None)
            best = max((truth[v] for v, x in zip(variants, row) if x is not None), default=0.0)
            total_q += min(q, (1 - dv) * best)  # the solver's tolerance can put a mix a hair above its best option
    n = len(requests)
    return {"slo_violation_pct": 100.0 * dropped / max(n, 1), "mean_quality": total_q / max(served, 1e-9), "requests": n}
