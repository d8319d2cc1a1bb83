"""Serving policies behind one small interface, with a registry.

``argus``      prompt-aware and load-aware: the MILP plans workers and per-class variant mixes
               from the forecast; the router follows it per prompt with predicted quality.
``clipper-ha`` always the best-quality variant (k0).
``clipper-ht`` always the fastest variant.
``nirvana``    approximate caching alone: the largest K whose cached latent clears its
               similarity threshold, else k0; load-agnostic.
``proteus``    load-driven model-variant scaling by the same MILP, prompt-agnostic (one class,
               the model variants k0 and fast, no cache).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import numpy as np

from orchestrator.planner import Plan, PlanInput, solve
from orchestrator.predictor import QualityPredictor
from orchestrator.profile import Profile
from orchestrator.router import ClusterState, Decision, RequestFeatures, family_of, route_fixed, route_planned


@dataclasses.dataclass
class PromptClasses:
    """k-means clusters of prompt embeddings (the planner's prompt classes)."""

    centroids: np.ndarray  # (C, D) unit norm

    @classmethod
    def fit(cls, embeddings: np.ndarray, k: int = 8, iters: int = 25, seed: int = 0) -> PromptClasses:
        rng = np.random.default_rng(seed)
        k = min(k, len(embeddings))
        cent = embeddings[rng.choice(len(embeddings), k, replace=False)].copy()
        for _ in range(iters):
            assign = (embeddings @ cent.T).argmax(1)
            for c in range(k):
                members = embeddings[assign == c]
                if len(members):
                    cent[c] = members.mean(0)
            cent /= np.linalg.norm(cent, axis=1, keepdims=True) + 1e-12
        return cls(cent)

    def assign(self, embedding: np.ndarray) -> int:
        return int((self.centroids @ np.asarray(embedding).reshape(-1)).argmax())

    def __len__(self) -> int:
        return len(self.centroids)


@dataclasses.dataclass
class PolicyContext:
    profile: Profile
    predictor: QualityPredictor
    classes: PromptClasses
    slo_ms: float
    headroom: float = 1.2
    plan_interval_s: float | None = None
    """How often the planner runs (None: 2x the k0 batch-of-one latency, as the benches and the
    front door's default use); a model switch's outage is weighed against this horizon."""


class Policy:
    """``variants``: what the policy may use. ``replan`` runs periodically (None: static policy);
    ``route`` runs per request and must be a pure function of its arguments and the last plan."""

    name: ClassVar[str]
    prompt_classes: ClassVar[bool] = False

    def __init__(self, ctx: PolicyContext):
        self.ctx = ctx
        self.plan: Plan | None = None

    @property
    def variants(self) -> list[str]:
        return list(self.ctx.profile.variants)

    def replan(self, demand_rps: float, class_mix: np.ndarray, num_workers: int, previous: dict[str, int] | None,
               observed: np.ndarray | None = None) -> Plan | None:
        """``observed``: (classes, variants) fraction of recent requests that found each variant
        available (cache hits), from ``ClusterState.observed_availability``; None: the profile's."""
        return None

    def initial_families(self, num_workers: int) -> list[str]:
        """The model family of each worker before any plan."""
        fams = {family_of(v) for v in self.variants}
        return ["base" if "base" in fams else "fast"] * num_workers

    def route(self, req: RequestFeatures, state: ClusterState, now_s: float) -> Decision:
        raise NotImplementedError


POLICIES: dict[str, type[Policy]] = {}


def register(name: str) -> Callable[[type[Policy]], type[Policy]]:
    def deco(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return deco


def make_policy(name: str, ctx: PolicyContext) -> Policy:
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(sorted(POLICIES))}")
    return POLICIES[name](ctx)


@register("clipper-ha")
class ClipperHA(Policy):
    def route(self, req, state, now_s):
        return route_fixed(req, state, self.ctx.profile, "k0", now_s, shed_late=False)


@register("clipper-ht")
class ClipperHT(Policy):
    @property
    def variants(self):
        return [self.ctx.profile.fastest_variant]

    def route(self, req, state, now_s):
        return route_fixed(req, state, self.ctx.profile, self.ctx.profile.fastest_variant, now_s, shed_late=False)


@register("nirvana")
class Nirvana(Policy):
    @property
    def variants(self):
        return [v for v in self.ctx.profile.variants if v != "fast"]

    def route(self, req, state, now_s):
        cached = [v for v in req.available if v.startswith("k") and v != "k0"]
        best = max(cached, key=lambda v: int(v[1:]), default="k0")
        return route_fixed(req, state, self.ctx.profile, best, now_s, shed_late=False)


class _Planned(Policy):
    """Shared by argus and proteus: plan with the MILP, route with route_planned."""

    def plan_input(self, demand_rps, class_mix, num_workers, previous, observed=None) -> PlanInput:
        raise NotImplementedError

    def replan(self, demand_rps, class_mix, num_workers, previous, observed=None):
        self.plan = solve(self.plan_input(demand_rps, class_mix, num_workers, previous, observed))
        return self.plan

    def _plan_class(self, req: RequestFeatures) -> int:
        return req.prompt_class

    def route(self, req, state, now_s):
        variants = self.variants
        if self.plan is None:
            target = {"k0": 1.0}
        else:
            target = self.plan.target(self._plan_class(req))
        req = dataclasses.replace(req, prompt_class=self._plan_class(req))
        return route_planned(req, state, self.ctx.profile, variants, target, now_s, prompt_aware=self.prompt_classes)

    def _common(self, variants, quality, availability, class_mix, demand_rps, num_workers, previous) -> PlanInput:
        prof = self.ctx.profile
        return PlanInput(
            demand_rps=demand_rps,
            class_mix=class_mix,
            quality=quality,
            availability=availability,
            throughput_rps=np.array([prof.variants[v].throughput(self.ctx.slo_ms) for v in variants]),
            family=[family_of(v) for v in variants],
            variants=variants,
            num_workers=num_workers,
            load_time_s={family_of(v): prof.variants[v].load_time_s for v in variants},
            previous_workers=previous,
            headroom=self.ctx.headroom,
            switch_penalty_per_s=switch_penalty_per_s(num_workers, self.ctx.plan_interval_s or 2 * prof.variants["k0"].latency_ms[1] / 1000.0),
        )


def switch_penalty_per_s(num_workers: int, horizon_s: float) -> float:
    """A worker loading a model serves nothing: L seconds of it are L / (workers x horizon) of the
    cluster's capacity over the plan's horizon, priced like shedding that share of the demand."""
    from orchestrator.planner import SHED_PENALTY

    return SHED_PENALTY / (max(num_workers, 1) * max(horizon_s, 1e-3))


@register("argus")
class Argus(_Planned):
    prompt_classes = True

    def plan_input(self, demand_rps, class_mix, num_workers, previous, observed=None):
        ctx = self.ctx
        table = ctx.profile.quality
        variants = self.variants
        assign = np.array([ctx.classes.assign(e) for e in table.embeddings])
        pred = ctx.predictor.predict_table(table, np.arange(len(table.prompts)))
        q = np.zeros((len(ctx.classes), len(variants)))
        a = np.ones_like(q)
        for c in range(len(ctx.classes)):
            rows = assign == c
            if not rows.any():
                q[c] = [1.0 if v == "k0" else 0.0 for v in variants]
                continue
            for j, v in enumerate(variants):
                q[c, j] = pred[v][rows].mean() if v != "k0" else 1.0
                if ctx.profile.variants[v].needs_cache:
                    a[c, j] = float((table.similarity[v][rows] >= ctx.profile.thresholds[ctx.profile.variants[v].k]).mean())
        if observed is not None:  # the live cache's hit rates, where traffic has shown them
            cached = [j for j, v in enumerate(variants) if ctx.profile.variants[v].needs_cache]
            a[:, cached] = np.where(np.isnan(observed[:, cached]), a[:, cached], observed[:, cached])
        return self._common(variants, q, a, class_mix, demand_rps, num_workers, previous)


@register("proteus")
class Proteus(_Planned):
    @property
    def variants(self):
        return [v for v in self.ctx.profile.variants if not self.ctx.profile.variants[v].needs_cache]

    def _plan_class(self, req):
        return 0

    def plan_input(self, demand_rps, class_mix, num_workers, previous, observed=None):
        table = self.ctx.profile.quality
        variants = self.variants
        q = np.array([[1.0 if v == "k0" else float(table.relative_quality[v].mean()) for v in variants]])
        return self._common(variants, q, np.ones_like(q), np.array([1.0]), demand_rps, num_workers, previous)
