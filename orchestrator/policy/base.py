"""The policy interface, its context, and the registry.

A policy has two entry points, both pure functions of their arguments (and the policy's last
plan), so the live front door and the simulator call the very same code:

- ``replan(ControlInput) -> Plan | None``: every plan interval, from the control loop
  (``orchestrator.policy.control``); None for static policies.
- ``route(RequestFeatures, ClusterState, now) -> Decision``: per request. Callers go through
  ``decide``, which also books the decision into the cluster state.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, ClassVar

import numpy as np

from orchestrator.policy.classes import NUM_PROMPT_CLASSES, PromptClasses
from orchestrator.policy.pair_predictor import PairQualityPredictor, SourceCandidates, rank_sources
from orchestrator.policy.planner import Plan
from orchestrator.policy.predictor import QualityPredictor
from orchestrator.policy.router import ClusterState, Decision, RequestFeatures, family_of, route_fixed
from orchestrator.policy.text_predictor import TextQualityPredictor
from orchestrator.profile.schema import Profile

if TYPE_CHECKING:
    from orchestrator.policy.control import ControlInput


FLOOR_AT_K0 = "quality floor"
"""Decision reason prefix: the client's min_quality left only k0, served even if it misses the deadline."""


def default_plan_interval_s(profile: Profile) -> float:
    """How often the control loop replans: twice the k0 batch-of-one latency, long enough for a
    plan to take effect on the queues, short enough to follow a burst."""
    return 2 * profile.variants["k0"].latency_ms[1] / 1000.0


@dataclasses.dataclass
class PolicyContext:
    """What every policy reads: the profile, the quality predictor and prompt classes fitted on
    its quality table, and the SLO the throughputs are computed for."""

    profile: Profile
    predictor: QualityPredictor
    classes: PromptClasses
    slo_ms: float
    headroom: float = 1.2
    """Planned capacity over forecast demand. 1.35 gave argus 0% violations at 2x in the simulated
    load sweep (1.8% at 1.2), but live on one CPU worker (`argus demo`) it shed 25 of 59 requests
    that 1.2 serves: kept at 1.2."""
    pair: PairQualityPredictor | None = None
    """With one, a request's K variants are predicted from the prompt and each cached source the
    cache offers (``rank_sources``), and resume from the best of them rather than the most similar;
    the fast model from the prompt. None: the per-prompt predictor on the best similarity."""
    text: TextQualityPredictor | None = None
    """With one, the variants it predicts (a deployment's quality table: the fast model) are
    predicted from the prompt's text rather than its embedding."""

    @classmethod
    def build(cls, profile: Profile, slo_ms: float, num_classes: int = NUM_PROMPT_CLASSES) -> PolicyContext:
        """The one recipe for a decision context, shared by the front door, the simulator and the benches."""
        return cls(profile, QualityPredictor.fit(profile.quality), PromptClasses.fit(profile.quality.embeddings, k=num_classes), slo_ms)

    def features(self, request_id: str, arrival_s: float, slo_ms: float, embedding: np.ndarray, similarity: dict[str, float],
                 servable: frozenset[str], candidates: SourceCandidates | None = None, text: str | None = None,
                 min_quality: float | None = None) -> RequestFeatures:
        """A request's features from its prompt embedding and the cache's best similarity per K:
        prompt class, predicted quality per variant, and the variants on offer (the cache clears
        the level's threshold, and some healthy worker can run it, and, with the client's
        ``min_quality``, its predicted quality meets that floor; k0 always does). With a pair predictor
        and the cache's candidates, each K variant's source is the best-predicted one (``sources``)."""
        quality, sources = self.predictor.predict(embedding, similarity), {}
        available = self.profile.available_variants(similarity)
        if self.pair is not None and candidates is not None and similarity:
            vp = self.profile.variants
            ranked = rank_sources(self.pair, embedding, candidates, {v: self.profile.thresholds[vp[v].k] for v in candidates.ids},
                                  {v: vp[v].k for v in candidates.ids})
            similarity, sources = {**similarity, **ranked.similarity}, ranked.entry
            quality = {**quality, **ranked.quality, **({"fast": self.pair.predict_fast(embedding)} if "fast" in quality else {})}
            available = frozenset(v for v in available if v not in candidates.ids) | ranked.offered
        if self.text is not None and text is not None:  # a deployment's labels: a fast model may beat the base on a prompt (not capped at k0)
            quality = {**quality, **{v: q for v, q in self.text.predict(text).items() if v in quality}}
        available = available & servable
        if min_quality is not None:
            available = frozenset(v for v in available if v == "k0" or quality.get(v, 0.0) >= min_quality)
        return RequestFeatures(request_id, arrival_s, arrival_s + slo_ms / 1000.0, self.classes.assign(embedding),
                               quality, available, sources, min_quality)


class Policy:
    """``variants``: what the policy may use. Subclasses implement ``route`` and, if they plan, ``replan``."""

    name: ClassVar[str]
    prompt_classes: ClassVar[bool] = False
    ranks_sources: ClassVar[bool] = False
    """Whether its K variants resume from the cached source the context's pair predictor ranks
    best (argus) rather than the most similar (NIRVANA's definition, and the ablation)."""

    def __init__(self, ctx: PolicyContext):
        self.ctx = ctx
        self.plan: Plan | None = None

    @property
    def variants(self) -> list[str]:
        return list(self.ctx.profile.variants)

    @property
    def uses_cache(self) -> bool:
        """Whether requests need a cache lookup before routing (some variant starts from a cached latent)."""
        return any(self.ctx.profile.variants[v].needs_cache for v in self.variants)

    def replan(self, inp: ControlInput) -> Plan | None:
        return None

    def initial_families(self, num_workers: int) -> list[str]:
        """The model family of each worker before any plan."""
        fams = {family_of(v) for v in self.variants}
        return ["base" if "base" in fams else "fast"] * num_workers

    def route(self, req: RequestFeatures, state: ClusterState, now_s: float) -> Decision:
        raise NotImplementedError

    def decide(self, req: RequestFeatures, state: ClusterState, now_s: float) -> Decision:
        """Count the arrival, route it, book the decision (the caller holds any lock on ``state``).

        With a quality floor, a variant below it is never served: when the policy sheds the request or
        picks such a variant (no variant meets both the floor and the deadline), it is served at k0,
        even if late (``FLOOR_AT_K0`` in the reason; the front door counts it), or refused with that
        reason when no healthy worker hosts k0."""
        state.observe(req, self.variants)
        decision = self.route(req, state, now_s)
        if req.min_quality is not None and (decision.variant is None or decision.variant not in req.available):
            forced = route_fixed(req, state, self.ctx.profile, "k0", now_s)
            why = f"{FLOOR_AT_K0}: only k0 meets min_quality {req.min_quality:g}"
            decision = dataclasses.replace(forced, reason=why if forced.variant else f"{why}, and no healthy worker serves k0")
        state.apply(req, decision, self.variants, now_s)
        return decision


POLICIES: dict[str, type[Policy]] = {}


def register(name: str) -> Callable[[type[Policy]], type[Policy]]:
    def deco(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return deco
