"""The load-agnostic baselines: one fixed rule per request, no plan.

``clipper-ha`` always the best-quality variant (k0).
``clipper-ht`` always the fastest variant.
``nirvana``    approximate caching alone: the largest K whose cached latent clears its fixed
               similarity threshold, else k0.
"""

from __future__ import annotations

from orchestrator.policy.base import Policy, register
from orchestrator.policy.router import route_fixed


@register("clipper-ha")
class ClipperHA(Policy):
    def route(self, req, state, now_s):
        return route_fixed(req, state, self.ctx.profile, "k0", now_s)


@register("clipper-ht")
class ClipperHT(Policy):
    @property
    def variants(self):
        return [self.ctx.profile.fastest_variant]

    def route(self, req, state, now_s):
        return route_fixed(req, state, self.ctx.profile, self.ctx.profile.fastest_variant, now_s)


@register("nirvana")
class Nirvana(Policy):
    @property
    def variants(self):
        return [v for v in self.ctx.profile.variants if v != "fast"]

    def route(self, req, state, now_s):
        cached = [v for v in req.available if v.startswith("k") and v != "k0"]
        best = max(cached, key=lambda v: int(v[1:]), default="k0")
        return route_fixed(req, state, self.ctx.profile, best, now_s)
