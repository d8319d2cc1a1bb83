"""The load-aware policies: the MILP plans, ``route_planned`` follows the plan per request.

``argus``   prompt-aware: the plan fixes per-class variant mixes from predicted quality; the
            router spends each class's budget on the prompts that lose least.
``proteus`` load-driven model-variant scaling by the same MILP, prompt-agnostic (one class, the
            model variants k0 and fast, no cache).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from orchestrator.policy.base import Policy, register
from orchestrator.policy.control import ControlInput
from orchestrator.policy.planner import SHED_PENALTY, PlanInput, solve
from orchestrator.policy.predictor import APPROX_CAP
from orchestrator.policy.router import RequestFeatures, family_of, route_planned


def switch_penalty_per_s(num_workers: int, horizon_s: float) -> float:
    """A worker loading a model serves nothing: L seconds of it are L / (workers x horizon) of the
    cluster's capacity over the plan's horizon, priced like shedding that share of the demand."""
    return SHED_PENALTY / (max(num_workers, 1) * max(horizon_s, 1e-3))


class _Planned(Policy):
    """Shared by argus and proteus: plan with the MILP, route with route_planned."""

    def plan_input(self, inp: ControlInput) -> PlanInput:
        raise NotImplementedError

    def replan(self, inp):
        self.plan = solve(self.plan_input(inp))
        return self.plan

    def _plan_class(self, req: RequestFeatures) -> int:
        return req.prompt_class

    def route(self, req, state, now_s):
        target = {"k0": 1.0} if self.plan is None else self.plan.target(self._plan_class(req))
        req = dataclasses.replace(req, prompt_class=self._plan_class(req))
        return route_planned(req, state, self.ctx.profile, self.variants, target, now_s, prompt_aware=self.prompt_classes)

    def _common(self, variants, quality, availability, class_mix, inp: ControlInput) -> PlanInput:
        prof = self.ctx.profile
        return PlanInput(
            demand_rps=inp.demand_rps,
            class_mix=class_mix,
            quality=quality,
            availability=availability,
            throughput_rps=np.array([prof.variants[v].throughput(self.ctx.slo_ms) for v in variants]),
            family=[family_of(v) for v in variants],
            variants=variants,
            num_workers=inp.num_workers,
            load_time_s={family_of(v): prof.variants[v].load_time_s for v in variants},
            previous_workers=inp.previous_families,
            headroom=self.ctx.headroom,
            switch_penalty_per_s=switch_penalty_per_s(inp.num_workers, inp.plan_interval_s),
        )


@register("argus")
class Argus(_Planned):
    prompt_classes = True
    ranks_sources = True

    @functools.cached_property
    def _profile_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(quality, availability), each (classes, variants), from the profile's quality table: the
        predicted quality and the share clearing the cache threshold, per class. Fixed by the
        profile, so computed once, not at every control tick."""
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
        return q, a

    def plan_input(self, inp):
        q, profiled = self._profile_tables
        observed = inp.observed_availability  # the live cache's hit rates, where traffic has shown them (NaN elsewhere)
        cached = [j for j, v in enumerate(self.variants) if self.ctx.profile.variants[v].needs_cache]
        a = profiled.copy()
        a[:, cached] = np.where(np.isnan(observed[:, cached]), profiled[:, cached], observed[:, cached])
        return self._common(self.variants, q, a, inp.class_mix, inp)


@register("argus-noprompt")
class ArgusNoPrompt(Argus):
    """The prompt-awareness ablation: argus's planner and router, fed each variant's mean measured
    quality instead of a per-prompt prediction (so also blind to how similar, or exact, the cached
    match is; it still only uses a K variant where the cache offers one). The difference to argus is
    what reading the prompt and its cache similarity buys."""

    ranks_sources = False  # blind to the prompt: it resumes from the most similar source

    @functools.cached_property
    def _means(self) -> dict[str, float]:
        table = self.ctx.profile.quality
        return {v: (1.0 if v == "k0" else min(APPROX_CAP, float(np.minimum(table.relative_quality[v], 1.0).mean()))) for v in self.variants}

    @functools.cached_property
    def _profile_tables(self) -> tuple[np.ndarray, np.ndarray]:
        _, availability = super()._profile_tables
        q = np.tile(np.array([self._means[v] for v in self.variants]), (len(self.ctx.classes), 1))
        return q, availability

    def route(self, req, state, now_s):
        pred = {v: self._means[v] for v in req.predicted_quality}
        return super().route(dataclasses.replace(req, predicted_quality=pred), state, now_s)


@register("proteus")
class Proteus(_Planned):
    @property
    def variants(self):
        return [v for v in self.ctx.profile.variants if not self.ctx.profile.variants[v].needs_cache]

    def _plan_class(self, req):
        return 0

    def plan_input(self, inp):
        table = self.ctx.profile.quality
        variants = self.variants
        q = np.array([[1.0 if v == "k0" else float(table.relative_quality[v].mean()) for v in variants]])
        return self._common(variants, q, np.ones_like(q), np.array([1.0]), inp)
