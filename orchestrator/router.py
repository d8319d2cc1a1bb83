"""Per-request routing as pure functions of (request features, cluster state, plan).

The live front door and the simulator build the same ``RequestFeatures`` and ``ClusterState``
and call the same functions, so a policy behaves identically in both.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from orchestrator.profile import Profile


@dataclasses.dataclass(frozen=True)
class RequestFeatures:
    request_id: str
    arrival_s: float
    deadline_s: float
    prompt_class: int
    predicted_quality: dict[str, float]
    """Predicted relative quality per variant for this prompt."""
    available: frozenset[str]
    """Variants servable now: k0 and fast always; kK only on a cache hit that clears K's threshold."""


@dataclasses.dataclass
class WorkerState:
    name: str
    family: str
    """Model family it currently serves ('base' serves every k variant, 'fast' the fast model)."""
    backlog_s: float = 0.0
    """Estimated seconds of work queued or running on it."""
    healthy: bool = True


@dataclasses.dataclass
class ClusterState:
    workers: list[WorkerState]
    served: np.ndarray
    """(classes, variants) requests routed so far, for following the plan's mix."""


@dataclasses.dataclass(frozen=True)
class Decision:
    variant: str | None
    """None: shed (RESOURCE_EXHAUSTED)."""
    worker: str | None
    reason: str
    predicted_quality: float = 0.0
    estimated_latency_s: float = 0.0
    booked_s: float = 0.0
    """Work added to the worker's backlog for this request (removed when it completes)."""


def family_of(variant: str) -> str:
    return "fast" if variant == "fast" else "base"


def service_s(profile: Profile, variant: str) -> float:
    lat = profile.variants[variant].latency_ms
    return lat[min(lat)] / 1000.0


def best_worker(state: ClusterState, family: str) -> WorkerState | None:
    """Least-backlogged healthy worker of a family."""
    ws = [w for w in state.workers if w.healthy and w.family == family]
    return min(ws, key=lambda w: (w.backlog_s, w.name)) if ws else None


def estimate(profile: Profile, state: ClusterState, variant: str) -> tuple[WorkerState | None, float]:
    """(worker, seconds until this variant would finish on it)."""
    w = best_worker(state, family_of(variant))
    return (w, float("inf")) if w is None else (w, w.backlog_s + service_s(profile, variant))


def route_fixed(req: RequestFeatures, state: ClusterState, profile: Profile, variant: str, now_s: float, shed_late: bool) -> Decision:
    """One variant, whatever the load (Clipper-HA/HT, NIRVANA's choice)."""
    w, eta = estimate(profile, state, variant)
    if w is None:
        return Decision(None, None, f"no healthy worker serves {variant}")
    if shed_late and now_s + eta > req.deadline_s:
        return Decision(None, None, f"{variant} cannot meet the deadline ({eta:.3f}s needed)")
    return Decision(variant, w.name, "fixed", req.predicted_quality.get(variant, 0.0), eta)


def route_planned(
    req: RequestFeatures,
    state: ClusterState,
    profile: Profile,
    variants: list[str],
    target: dict[str, float],
    now_s: float,
    prompt_aware: bool,
    plan_weight: float = 1.0,
) -> Decision:
    """Follow the plan's mix for the request's class, within what meets the deadline.

    Score = plan deficit (target share minus share served so far) x plan_weight, plus, when
    ``prompt_aware``, this prompt's predicted quality: so within the planned mix the prompts that
    lose least take the cheap variants. A plan variant that cannot meet the deadline is replaced
    by the feasible variant with the least predicted quality loss; only when no variant is
    feasible is the request shed.
    """
    row = state.served[req.prompt_class]
    total = max(float(row.sum()), 1.0)
    feasible = []
    for j, v in enumerate(variants):
        if v not in req.available:
            continue
        w, eta = estimate(profile, state, v)
        if w is not None and now_s + eta <= req.deadline_s:
            feasible.append((v, j, w, eta))
    if not feasible:
        return Decision(None, None, "no variant can meet the deadline")
    planned = [f for f in feasible if target.get(f[0], 0.0) > 0]
    if planned:
        def score(f):
            v, j, _, _ = f
            deficit = target.get(v, 0.0) - row[j] / total
            return plan_weight * deficit + (req.predicted_quality.get(v, 0.0) if prompt_aware else 0.0)

        v, _, w, eta = max(planned, key=score)
        reason = "plan"
    else:
        v, _, w, eta = max(feasible, key=lambda f: (req.predicted_quality.get(f[0], 0.0), -f[3]))
        reason = "redirect: planned variants saturated"
    return Decision(v, w.name, reason, req.predicted_quality.get(v, 0.0), eta)


def assign_families(current: list[str], wanted_counts: dict[str, int]) -> list[str]:
    """New family per worker for a plan, moving as few workers as possible (each move may load a model).

    Workers beyond the plan's total keep serving the base model."""
    wanted: list[str] = [f for f, n in sorted(wanted_counts.items()) for _ in range(n)]
    wanted += ["base"] * (len(current) - len(wanted))
    out: list[str | None] = [None] * len(current)
    for i, fam in enumerate(current):  # keep workers already on a wanted family
        if fam in wanted:
            wanted.remove(fam)
            out[i] = fam
    for i in range(len(current)):
        if out[i] is None:
            out[i] = wanted.pop(0)
    return out  # type: ignore[return-value]
