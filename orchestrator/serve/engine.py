"""The front door's engine: one request's phases, with typed hand-offs and no threads.

    admit      bound the queue, count the arrival           -> Admitted  (or Overloaded / Draining)
    featurize  t2i_probe: embeddings + cache candidates     -> Featurized   (Triton call 1)
    decide     Policy.decide(features, state, now)          -> Decision  (the simulator calls the same)
    generate   gen_<variant> on the chosen worker           -> Generated    (Triton call 2; the cache
               latent is fetched and the step latents inserted inside Triton)
    record     release the booking, metrics, sampled quality scoring (off the response path)

``handle`` runs parse..record for one request and raises a typed error for every outcome but
success, so each protocol front (gRPC, KServe HTTP, OpenAI) only maps outcomes to its status
codes (``orchestrator.serve.outcomes``).
``control_tick`` is one step of the control loop (``orchestrator.policy.control``); the
background loops (``orchestrator.serve.loops``) call it and the health checks on the wall clock,
a test can call it on a virtual one (the engine reads time only through ``clock``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from orchestrator.policy.base import FLOOR_AT_K0, Policy, PolicyContext, default_plan_interval_s
from orchestrator.policy.pair_predictor import PairQualityPredictor, SourceCandidates
from orchestrator.policy.control import ControlLoop, ControlStep
from orchestrator.policy.registry import make_policy
from orchestrator.policy.router import ClusterState, Decision, RequestFeatures, WorkerState
from orchestrator.profile.schema import Profile
from orchestrator.serve.admission import Admitted, BadInput, prompt_for_log
from orchestrator.serve.config import FrontDoorConfig
from orchestrator.serve.dispatch import DispatchGate
from orchestrator.serve.metrics import Metrics
from orchestrator.serve.scoring import QualitySampler
from orchestrator.serve.workers import Probe, TritonWorkers, is_deadline_exceeded

log = logging.getLogger("argus.frontdoor")


def _pair_predictor(pair_table: Path) -> PairQualityPredictor:
    from orchestrator.sim.world import fit_pair_predictor

    return fit_pair_predictor(pair_table)


class Overloaded(RuntimeError):
    """The admission bound is reached (RESOURCE_EXHAUSTED / HTTP 429, retry later)."""


class Draining(RuntimeError):
    """The front door is shutting down: no new admissions."""


class Shed(RuntimeError):
    """The policy found no variant that can meet the deadline (RESOURCE_EXHAUSTED / HTTP 429)."""


class VariantTimeout(RuntimeError):
    """A generation exceeded request_timeout_s on its worker (the variant leaves that worker's routing)."""


class WorkerFailed(RuntimeError):
    """A worker failed the request (UNAVAILABLE / HTTP 503)."""


@dataclasses.dataclass(frozen=True)
class Featurized:
    features: RequestFeatures
    probe: Probe
    similarity: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Generated:
    images: np.ndarray
    decision: Decision
    """The decision actually executed (a K variant whose cache entry was evicted meanwhile runs as k0)."""
    generation_s: float = 0.0
    """Wall time of the generation call to Triton (what the front door adds is the rest)."""


@dataclasses.dataclass(frozen=True)
class Served:
    images: np.ndarray
    decision: Decision
    k: int
    generation_ms: float
    triton_calls: int
    """Calls to Triton this request made: t2i_probe (a second one if the cache endpoint failed), gen_<variant>."""
    queued_ms: float = 0.0
    """Time it waited at the dispatch gate for its worker's earlier batches (the worker's queue,
    which without the gate is spent inside Triton, in the generation call)."""
    batch: int = 1
    """Requests the dispatch gate sent to Triton together with it (1 without the gate): with
    ``generation_ms``, how fast the worker ran against the profile's batch latency."""

    def parameters(self) -> dict[str, str | int | float]:
        """The decision as every protocol returns it beside the image."""
        d = self.decision
        return {"variant": d.variant, "k": self.k, "worker": d.worker, "predicted_quality": round(float(d.predicted_quality), 4),
                "reason": d.reason, "generation_ms": round(self.generation_ms, 3), "triton_calls": self.triton_calls,
                "eta_ms": round(1000.0 * d.eta_s, 3), "queued_ms": round(self.queued_ms, 3), "batch": self.batch}


class Engine:
    def __init__(self, cfg: FrontDoorConfig, policy: Policy | None = None, workers: TritonWorkers | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if cfg.auth_token is None and not cfg.allow_unauthenticated:
            raise ValueError("no bearer token: set auth_token, or allow_unauthenticated=True to serve without auth deliberately")
        self.cfg = cfg
        self.clock = clock
        self.profile = Profile.load(cfg.profile_path)
        self.cached_levels = sorted(self.profile.thresholds)
        """The K > 0 levels in the order of the probe's per-level outputs (ENTRY_IDS, SIMILARITY)."""
        self.policy = policy or make_policy(cfg.policy, dataclasses.replace(
            PolicyContext.build(self.profile, cfg.default_slo_ms), pair=_pair_predictor(cfg.pair_table) if cfg.pair_table else None))
        self.plan_interval_s = cfg.plan_interval_s or default_plan_interval_s(self.profile)
        self.workers = workers or TritonWorkers(cfg.workers, cfg.request_timeout_s, cfg.cache)
        self.state = ClusterState([WorkerState(w, f, colocated=frozenset(cfg.colocated_families))
                                   for w, f in zip(cfg.workers, self.policy.initial_families(len(cfg.workers)))],
                                  np.zeros((len(self.policy.ctx.classes), len(self.policy.variants))))
        self.control = ControlLoop(self.policy, self.plan_interval_s, start_s=clock())
        self.gate = DispatchGate(self.profile, max(self.profile.variants["k0"].latency_ms)) if cfg.one_batch_at_a_time else None
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.draining = False
        self.stop = threading.Event()
        """Set by ``close``; the background loops watch it."""
        self.disabled_until: dict[tuple[str, str], float] = {}
        self.metrics = Metrics()
        self._image_size: tuple[int, int] | None = None
        self.scorer = QualitySampler(self.metrics, cfg.score_sample_rate, scorer_dir=cfg.scorer_dir) if cfg.score_quality else None
        for w in cfg.workers:
            self.metrics.worker_healthy.labels(worker=w).set(1)

    # ---------------------------------------------------------------- phases
    def admit(self, adm: Admitted) -> Admitted:
        with self.lock:
            if self.draining:
                raise Draining("shutting down; not admitting new requests")
            self.control.count_arrival()
            if self.in_flight >= self.cfg.max_queue:
                raise Overloaded(f"admission queue full ({self.cfg.max_queue} in flight); retry after ~1 s")
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        log.debug("admitted %s %s", adm.request_id, prompt_for_log(adm.prompt))
        self.metrics.in_flight.inc()
        return adm

    def featurize(self, adm: Admitted) -> Featurized:
        probe = self.workers.probe(adm.prompt, adm.tenant)
        sims: dict[str, float] = {}
        if not probe.cache_ok:
            self.metrics.cache_unavailable.inc()
        elif self.policy.uses_cache:
            sims = {f"k{k}": float(s) for k, s in zip(self.cached_levels, probe.similarity)}
        with self.lock:  # a dead worker or a timed-out variant is not on offer
            servable = self.state.servable(self.policy.variants)
        features = self.policy.ctx.features(adm.request_id, adm.arrival_s, adm.slo_ms, probe.embedding, sims, servable,
                                            self.candidates(probe) if sims else None, text=adm.prompt, min_quality=adm.min_quality)
        return Featurized(features, probe, sims)

    def candidates(self, probe: Probe) -> SourceCandidates | None:
        """The probe's sources per K variant, for a policy that ranks them with its context's pair predictor."""
        if not self.policy.ranks_sources or self.policy.ctx.pair is None or probe.candidate_ids is None:
            return None
        names = [f"k{k}" for k in self.cached_levels]
        return SourceCandidates(dict(zip(names, probe.candidate_ids)), dict(zip(names, probe.candidate_similarity)),
                                dict(zip(names, probe.candidate_embeddings)))

    def decide(self, feats: RequestFeatures) -> Decision:
        with self.lock:
            decision = self.policy.decide(feats, self.state, self.clock())
        if decision.reason.startswith(FLOOR_AT_K0):
            self.metrics.floor_at_k0.inc()
        return decision

    def generate(self, adm: Admitted, decision: Decision, probe: Probe, sources: dict[str, int] | None = None) -> Generated:
        """``sources``: the entry per K variant the policy context chose (else the most similar)."""
        k = self.profile.variants[decision.variant].k
        entry = None if k == 0 else (sources or {}).get(decision.variant, int(probe.entry_ids[self.cached_levels.index(k)]))
        t0 = time.perf_counter()
        try:
            images, k_used = self.workers.generate(decision.worker, decision.variant, probe, adm.seed, entry, adm.tenant)
        except Exception as e:  # noqa: BLE001 - classified: a timeout disables the variant here
            if is_deadline_exceeded(e):
                self.disable_variant(decision.worker, decision.variant)
                raise VariantTimeout(f"{decision.variant} on {decision.worker} exceeded {self.cfg.request_timeout_s:.1f}s; "
                                     "taken out of routing") from None
            raise
        if k_used != k:  # the entry was evicted since the probe, or the cache stopped answering: it ran as k0
            self.metrics.cache_fallback.inc()
            decision = dataclasses.replace(decision, variant="k0", reason=decision.reason + "; cache entry gone, ran as k0")
        return Generated(images, decision, time.perf_counter() - t0)

    def record(self, adm: Admitted, decision: Decision, generated: Generated | None) -> None:
        """Release the booking (always); for a served request, observe it (the cache insert happens inside Triton)."""
        now_s = self.clock()
        observed_s = now_s - adm.arrival_s if generated is not None else None  # arrival to answer: the front door's work counts
        with self.lock:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.notify_all()
            if decision.worker is not None:
                self.metrics.backlog.labels(worker=decision.worker).set(self.state.release(decision, now_s, observed_s))
                self.metrics.slowdown.labels(worker=decision.worker).set(self.state.worker(decision.worker).slowdown)
        self.metrics.in_flight.dec()
        if generated is None:
            return
        latency = self.clock() - adm.arrival_s
        self.metrics.latency.observe(latency)
        self.metrics.variant.labels(variant=generated.decision.variant).inc()
        self.metrics.predicted_quality.observe(generated.decision.predicted_quality)
        if latency * 1000 > adm.slo_ms:
            self.metrics.slo_violations.inc()
        if self.scorer is not None:
            self.scorer.submit(generated.images, adm.prompt, generated.decision.variant)

    def serve(self, adm: Admitted) -> Served:
        """featurize -> decide -> generate -> record for an admitted request; every outcome but
        success is a typed error, and the request is always recorded (its booking released)."""
        decision, generated, failure, feats, queued_s, batch = Decision(None, None, "not decided"), None, None, None, 0.0, 1
        try:
            feats = self.featurize(adm)
            decision = self.decide(feats.features)
            if decision.variant is not None:
                t0 = time.perf_counter()
                with self.gate.turn(decision.worker, decision.variant, adm.slo_ms) if self.gate else contextlib.nullcontext(1) as batch:
                    queued_s = time.perf_counter() - t0
                    generated = self.generate(adm, decision, feats.probe, feats.features.sources)
                decision = generated.decision
        except Exception as e:  # noqa: BLE001 - a worker failure is this request's error, not the server's
            failure = e
        finally:
            self.record(adm, decision, generated)
        if isinstance(failure, VariantTimeout):
            self.metrics.requests.labels(outcome="timeout").inc()
            raise failure
        if failure is not None:
            self.metrics.requests.labels(outcome="error").inc()
            log.warning("request %s failed on %s: %s", adm.request_id, decision.worker, str(failure)[:300])
            raise WorkerFailed(f"worker failed: {type(failure).__name__}: {str(failure)[:300]}") from failure
        if decision.variant is None:
            self.metrics.requests.labels(outcome="shed").inc()
            raise Shed(f"shed: {decision.reason}")
        self.metrics.requests.labels(outcome="ok").inc()
        return Served(generated.images, decision, self.profile.variants[decision.variant].k, 1000.0 * generated.generation_s,
                      feats.probe.calls + 1, 1000.0 * queued_s, batch)

    def handle(self, parse: Callable[[float], Admitted]) -> tuple[Admitted, Served]:
        """One request from any protocol: ``parse(now_s)`` validates it, then admit and serve.
        Every outcome but success is a typed error (BadInput, Overloaded, Draining, Shed,
        VariantTimeout, WorkerFailed), counted here once for every protocol."""
        try:
            adm = self.admit(parse(self.clock()))
        except BadInput:
            self.metrics.requests.labels(outcome="invalid").inc()
            raise
        except Overloaded:
            self.metrics.requests.labels(outcome="rejected").inc()
            raise
        except Draining:
            self.metrics.requests.labels(outcome="draining").inc()
            raise
        return adm, self.serve(adm)

    # ---------------------------------------------------------------- control and health state
    def control_tick(self) -> ControlStep | None:
        """One step of the shared control loop; None when the policy failed to plan (the previous plan keeps serving)."""
        with self.lock:
            try:
                step = self.control.tick(self.state, self.clock())
            except Exception as e:  # noqa: BLE001 - a failed solve keeps the previous plan serving
                log.error("replan failed (previous plan kept): %s", e)
                return None
            families = [w.family for w in self.state.workers]
        self.metrics.demand.set(step.inputs.demand_rps)
        if step.plan is not None:
            self.metrics.planned_quality.set(step.plan.expected_quality)
        if step.switched:
            log.info("plan applied: %s", families)
        return step

    def disable_variant(self, worker: str, variant: str) -> None:
        with self.lock:
            self.state.worker(worker).disabled.add(variant)
            self.disabled_until[(worker, variant)] = self.clock() + self.cfg.variant_cooldown_s
        self.metrics.timeouts.labels(worker=worker, variant=variant).inc()
        self.metrics.variant_disabled.labels(worker=worker, variant=variant).set(1)
        log.warning("worker %s: %s timed out (> %.1fs); out of routing for %.0fs", worker, variant, self.cfg.request_timeout_s,
                    self.cfg.variant_cooldown_s)

    def enable_cooled_variants(self) -> None:
        """Variants whose cooldown ended come back into routing."""
        now = self.clock()
        with self.lock:
            for (worker, variant), until in list(self.disabled_until.items()):
                if now >= until:
                    del self.disabled_until[(worker, variant)]
                    self.state.worker(worker).disabled.discard(variant)
                    self.metrics.variant_disabled.labels(worker=worker, variant=variant).set(0)
                    log.info("worker %s: %s back in routing after its cooldown", worker, variant)

    def is_healthy(self, worker: str) -> bool:
        with self.lock:
            return self.state.worker(worker).healthy

    def set_healthy(self, worker: str, healthy: bool) -> None:
        with self.lock:
            ws = self.state.worker(worker)
            changed = ws.healthy != healthy
            ws.healthy = healthy
        if changed:
            (log.info if healthy else log.warning)("worker %s %s routing", worker, "back in" if healthy else "out of")
        self.metrics.worker_healthy.labels(worker=worker).set(1 if healthy else 0)

    def image_size_px(self) -> tuple[int, int]:
        """(height, width) of the served images: the model's own size, asked of the workers once."""
        if self._image_size is None:
            self._image_size = self.workers.image_size_px(self.policy.variants[0])
        return self._image_size

    def families(self) -> dict[str, str]:
        with self.lock:
            return {w.name: w.family for w in self.state.workers}

    # ---------------------------------------------------------------- shutdown
    def drain(self, timeout_s: float | None = None) -> bool:
        """Stop admitting; wait for in-flight requests (up to the deadline). True if all finished."""
        deadline = time.monotonic() + (self.cfg.drain_timeout_s if timeout_s is None else timeout_s)
        with self.lock:
            self.draining = True
            while self.in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("drain deadline passed with %d requests in flight", self.in_flight)
                    return False
                self.idle.wait(left)
        return True

    def close(self) -> None:
        self.stop.set()
        if self.scorer is not None:
            self.scorer.close()
