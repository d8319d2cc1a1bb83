"""A discrete-event simulator that drives the same policy objects and control loop as the live front door.

Virtual clock, simulated workers whose batch latencies come from the profile (with the front
door's measured per-request cost and the mixed-variant slowdown, ``batch_duration_s``), a control tick
every plan interval. Each request's prompt is seen through a world (``orchestrator.sim.world``: the
benches' ``CacheWorld`` looks it up in a simulated cache of what was served, and scores it by measured
ground truth for the source the policy chose). Per request it calls what the front door calls: ``PolicyContext.features``, then
``Policy.decide``; per tick, ``ControlLoop.tick``. Only Triton is replaced by the latency model,
and a worker switched to another model family is out of routing for the family's load time.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import deque

import numpy as np

from orchestrator.policy.base import Policy, default_plan_interval_s
from orchestrator.policy.control import ControlLoop, ControlStep
from orchestrator.policy.router import ClusterState, Decision, WorkerState, family_of, next_batch
from orchestrator.profile.schema import Profile
from orchestrator.sim.workload import Request
from orchestrator.sim.world import TableWorld, World


@dataclasses.dataclass
class SimConfig:
    num_workers: int
    plan_interval_s: float | None = None
    """None: the default (``default_plan_interval_s``) of the profile the policy decides on, as the front door uses its own."""
    max_batch: int = 8
    colocated_families: tuple[str, ...] = ()
    """Model families every worker holds at once (``WorkerState.colocated``): as a live CPU worker serving the whole repository."""
    mixed_variants: bool = False
    """Charge the profile's mixed-variant slowdown to a batch while another variant waits on its
    worker: a front door without its dispatch gate (``FrontDoorConfig.one_batch_at_a_time`` False)
    lets Triton run the two at once. False: one batch at a time, as the gated front door."""
    speed_sigma: float = 0.0
    """Each worker runs at the profile's latencies times a speed drawn afresh every
    ``speed_segment_s`` (lognormal, mean 1, this sigma): a shared machine drifts. Measured live, the
    worker's speed against the run's profile before and after each policy's replay (36 brackets in
    ``docs/live_summary*.json``) ranged 0.65-1.26, std 0.15. 0: the profile's speed, always."""
    speed_segment_s: float = 60.0
    batch_sigma: float = 0.0
    """Each batch's duration is also scattered by a lognormal of mean 1 and this sigma (one batch
    starting just before another's arrival, the front door's work on the same cores). 0: none."""
    scatter_seed: int = 0
    state_overrides: tuple[tuple[str, float | bool], ...] = ()
    """(field, value) set on the ``ClusterState`` before the run: the router's weights, for their ablation."""


@dataclasses.dataclass
class Record:
    request_id: str
    arrival_s: float
    deadline_s: float
    variant: str | None
    finish_s: float | None
    quality: float  # true relative quality of what was served (0 when shed)

    @property
    def violated(self) -> bool:
        return self.finish_s is None or self.finish_s > self.deadline_s


@dataclasses.dataclass
class SimWorker:
    state: WorkerState
    queue: deque = dataclasses.field(default_factory=deque)
    busy_until: float = 0.0
    available_at: float = 0.0
    """While loading another model family: when the load completes."""
    pending_load_s: float = 0.0
    """A switched worker first finishes the requests it queued for its old family, then loads."""


@dataclasses.dataclass(frozen=True)
class SimEvent:
    """One processed event, in order: what a live replay of the same run must see (the parity test)."""

    time_s: float
    kind: str  # "arrival" | "tick" | "done"
    request_id: str | None = None
    decision: Decision | None = None
    step: ControlStep | None = None


def table_metrics(requests: int, violated: int, served_variants: list[str], served_quality: list[float], served_ok: int,
                  duration_s: float) -> dict:
    """The comparison table's columns, one definition for live and simulated runs: violations
    (late or not served) over all requests, quality over served ones, goodput = served within SLO per second."""
    return {
        "requests": requests,
        "slo_violation_pct": 100.0 * violated / max(requests, 1),
        "shed_pct": 100.0 * (requests - len(served_variants)) / max(requests, 1),
        "mean_quality": float(np.mean(served_quality)) if served_quality else 0.0,
        "goodput_rps": served_ok / max(duration_s, 1e-9),
        "throughput_rps": len(served_variants) / max(duration_s, 1e-9),
        "variant_mix": {v: served_variants.count(v) for v in sorted(set(served_variants))},
    }


def batch_duration_s(profile: Profile, variant: str, n: int, mixed: bool) -> float:
    """Worker seconds for a batch of ``n``: the profiled batch latency, scaled by the measured
    mixed-variant slowdown when another variant waits on the same worker (live, Triton would run the
    two at once on the same cores), plus each request's probe (it runs on those cores too)."""
    fd = profile.frontdoor
    return profile.variants[variant].batch_latency_ms(n) / 1000.0 * (fd.mixed_slowdown if mixed else 1.0) + n * fd.probe_ms / 1000.0


def summarize(records: list[Record], duration_s: float) -> dict:
    served = [r for r in records if r.variant is not None]
    return table_metrics(len(records), sum(r.violated for r in records), [r.variant for r in served], [r.quality for r in served],
                         sum(not r.violated for r in served), duration_s)


class Simulator:
    def __init__(self, profile: Profile, policy: Policy, cfg: SimConfig, world: World | None = None):
        self.profile, self.policy, self.cfg = profile, policy, cfg
        self.plan_interval_s = cfg.plan_interval_s or default_plan_interval_s(policy.ctx.profile)
        self.workers = [SimWorker(WorkerState(f"w{i}", fam, colocated=frozenset(cfg.colocated_families)))
                        for i, fam in enumerate(policy.initial_families(cfg.num_workers))]
        self.state = ClusterState([w.state for w in self.workers], np.zeros((len(policy.ctx.classes), len(policy.variants))))
        for field, value in cfg.state_overrides:
            if not hasattr(self.state, field):
                raise ValueError(f"ClusterState has no field {field!r}")
            setattr(self.state, field, value)
        self._batch_rng = np.random.default_rng([cfg.scatter_seed, 1])
        self.control = ControlLoop(policy, self.plan_interval_s)
        self.world = world or TableWorld(profile)
        self.events: list = []
        self.seq = 0
        self.records: dict[str, Record] = {}
        self.truths: dict[str, float] = {}
        self.prompts: dict[str, str] = {}
        self.log: list[SimEvent] = []

    def _push(self, t: float, kind: str, payload) -> None:
        heapq.heappush(self.events, (t, self.seq, kind, payload))
        self.seq += 1

    def run(self, requests: list[Request]) -> list[Record]:
        for r in requests:
            self._push(r.arrival_s, "arrival", r)
        end = requests[-1].arrival_s if requests else 0.0
        t = self.plan_interval_s
        while t <= end + self.plan_interval_s:
            self._push(t, "tick", None)
            t += self.plan_interval_s
        while self.events:
            now, _, kind, payload = heapq.heappop(self.events)
            if kind == "arrival":
                self._arrival(now, payload)
            elif kind == "done":
                self._done(now, payload)
            elif kind == "answer":
                self._answer(now, payload)
            elif kind == "tick":
                self._tick(now)
            elif kind == "ready":
                if payload.pending_load_s == 0 and now >= payload.available_at:
                    payload.state.healthy = True
                self._start(now, payload)
        return [self.records[r.request_id] for r in requests]

    def _arrival(self, now: float, req: Request) -> None:
        self.control.count_arrival()
        view = self.world.observe(req.prompt, now)
        ranks = self.policy.uses_cache and self.policy.ranks_sources and self.policy.ctx.pair is not None
        feats = self.policy.ctx.features(req.request_id, req.arrival_s, req.slo_ms, view.embedding,
                                         view.similarity if self.policy.uses_cache else {}, self.state.servable(self.policy.variants),
                                         view.candidates if ranks else None, text=req.prompt)
        d = self.policy.decide(feats, self.state, now)
        self.log.append(SimEvent(now, "arrival", req.request_id, decision=d))
        self.records[req.request_id] = Record(req.request_id, now, feats.deadline_s, d.variant, None, 0.0)
        if d.variant is None:
            return
        self.truths[req.request_id] = self.world.commit(req.prompt, d.variant, feats.sources.get(d.variant), view)
        self.prompts[req.request_id] = req.prompt
        w = next(w for w in self.workers if w.state.name == d.worker)
        w.queue.append((req.request_id, d))
        if w.busy_until <= now:
            self._start(now, w)

    def _start(self, now: float, w: SimWorker) -> None:
        if w.busy_until > now:
            return
        if now < w.available_at:  # loading another model family
            self._push(w.available_at, "ready", w)
            return
        old = [item for item in w.queue if not w.state.hosts(family_of(item[1].variant))]
        if not old and w.pending_load_s > 0:  # the old family's queue is done: load the new model
            w.available_at, w.pending_load_s = now + w.pending_load_s, 0.0
            self._push(w.available_at, "ready", w)
            return
        if not w.queue:
            return
        order = old + [item for item in w.queue if item not in old]  # the old family's queue drains first
        slo_ms = {rid: 1000.0 * (self.records[rid].deadline_s - self.records[rid].arrival_s) for rid, _ in order}
        # Batches are formed from the profile the policy decides on, as the front door's gate forms them from its own.
        batch = [order[i] for i in next_batch(self.policy.ctx.profile, [(d.variant, slo_ms[rid]) for rid, d in order], self.cfg.max_batch)]
        variant = batch[0][1].variant
        for item in batch:
            w.queue.remove(item)
        mixed = self.cfg.mixed_variants and any(item[1].variant != variant for item in w.queue)
        duration = batch_duration_s(self.profile, variant, len(batch), mixed=mixed) * self._scatter(now, w)
        w.busy_until = now + duration
        self._push(w.busy_until, "done", (w, batch))

    def _scatter(self, now: float, w: SimWorker) -> float:
        """The factor on a batch's profiled duration: the worker's speed in this segment times the batch's own scatter."""
        c = self.cfg
        f = 1.0
        if c.speed_sigma > 0:
            seg = int(now // c.speed_segment_s)
            rng = np.random.default_rng([c.scatter_seed, 0, self.workers.index(w), seg])
            f *= float(rng.lognormal(-c.speed_sigma ** 2 / 2, c.speed_sigma))
        if c.batch_sigma > 0:
            f *= float(self._batch_rng.lognormal(-c.batch_sigma ** 2 / 2, c.batch_sigma))
        return f

    def _done(self, now: float, payload) -> None:
        w, batch = payload
        answered = now + self.profile.frontdoor.overhead_ms / 1000.0  # the front door's own hops, off the worker
        for item in batch:
            self._push(answered, "answer", item)
        self._start(now, w)

    def _answer(self, now: float, item) -> None:
        """The answer reaches the client: the booking is released and the router learns from it then, as live."""
        rid, decision = item
        rec = self.records[rid]
        rec.finish_s = now
        rec.quality = self.truths[rid]
        self.world.served(self.prompts[rid], decision.variant, now)
        self.state.release(decision, now, observed_s=now - rec.arrival_s)
        self.log.append(SimEvent(now, "done", rid, decision=decision))

    def _tick(self, now: float) -> None:
        step = self.control.tick(self.state, now)
        self.log.append(SimEvent(now, "tick", step=step))
        for i in step.switched:
            w = self.workers[i]
            load = 0.0 if w.state.family in w.state.colocated else max(
                (vp.load_time_s for v, vp in self.profile.variants.items() if family_of(v) == w.state.family), default=0.0)
            if load > 0:
                w.pending_load_s = load
                w.state.healthy = False  # out of routing until its queue is done and the model is loaded
                self._start(now, w)
