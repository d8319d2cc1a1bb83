"""A discrete-event simulator that drives the same policy objects as the live front door.

Virtual clock, simulated workers whose batch latencies come from the profile, a replan event
every ``plan_interval_s``. Each request's prompt maps to a row of the profile's quality table
(stable per prompt text, so reuse in the stream is reuse here); its cache availability follows
that row's measured similarity per K, except that a prompt seen before in the stream finds its
own latents (similarity 1, and resuming its own latent reproduces its k0 image). True relative
quality is capped at 1: a measured ratio above 1 is scorer noise, not a better image. The policies'
``route`` and ``replan`` are the live ones; only Triton is replaced by the latency model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
from collections import deque

import numpy as np

from orchestrator.forecast import HoltForecaster
from orchestrator.policies import Policy
from orchestrator.profile import Profile
from orchestrator.router import ClusterState, RequestFeatures, WorkerState, assign_families, family_of
from orchestrator.workload import Request


@dataclasses.dataclass
class SimConfig:
    num_workers: int
    plan_interval_s: float = 2.0
    max_batch: int = 8


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


def summarize(records: list[Record], duration_s: float) -> dict:
    served = [r for r in records if r.variant is not None]
    return table_metrics(len(records), sum(r.violated for r in records), [r.variant for r in served], [r.quality for r in served],
                         sum(not r.violated for r in served), duration_s)


class Simulator:
    def __init__(self, profile: Profile, policy: Policy, cfg: SimConfig):
        self.profile, self.policy, self.cfg = profile, policy, cfg
        self.workers = [SimWorker(WorkerState(f"w{i}", fam)) for i, fam in enumerate(policy.initial_families(cfg.num_workers))]
        self.state = ClusterState([w.state for w in self.workers], np.zeros((len(policy.ctx.classes), len(policy.variants))))
        self.events: list = []
        self.seq = 0
        self.seen: set[str] = set()
        self.records: dict[str, Record] = {}
        self.forecaster = HoltForecaster()
        self.arrivals_in_interval = 0
        self.class_counts = np.zeros(len(policy.ctx.classes))

    def _push(self, t: float, kind: str, payload) -> None:
        heapq.heappush(self.events, (t, self.seq, kind, payload))
        self.seq += 1

    def _row(self, prompt: str) -> int:
        return int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16) % len(self.profile.quality.prompts)

    def features(self, req: Request) -> tuple[RequestFeatures, dict[str, float]]:
        """The request's features and its true relative quality per variant."""
        table = self.profile.quality
        row = self._row(req.prompt)
        repeat = req.prompt in self.seen
        self.seen.add(req.prompt)
        emb = table.embeddings[row]
        sims, truth = {}, {"k0": 1.0}
        for v, vp in self.profile.variants.items():
            if v == "k0":
                continue
            if vp.needs_cache:
                sims[v] = 1.0 if repeat else float(table.similarity[v][row])
                truth[v] = 1.0 if repeat else min(1.0, float(table.relative_quality[v][row]))
            else:
                truth[v] = min(1.0, float(table.relative_quality[v][row]))
        ctx = self.policy.ctx
        cls = ctx.classes.assign(emb)
        self.class_counts[cls] += 1
        feats = RequestFeatures(req.request_id, req.arrival_s, req.arrival_s + req.slo_ms / 1000.0, cls, ctx.predictor.predict(emb, sims),
                                self.profile.available_variants(sims))
        return feats, truth

    def run(self, requests: list[Request]) -> list[Record]:
        for r in requests:
            self._push(r.arrival_s, "arrival", r)
        end = requests[-1].arrival_s if requests else 0.0
        t = self.cfg.plan_interval_s
        while t <= end + self.cfg.plan_interval_s:
            self._push(t, "replan", None)
            t += self.cfg.plan_interval_s
        truths: dict[str, dict[str, float]] = {}
        while self.events:
            now, _, kind, payload = heapq.heappop(self.events)
            if kind == "arrival":
                self._arrival(now, payload, truths)
            elif kind == "done":
                self._done(now, payload, truths)
            elif kind == "replan":
                self._replan(now)
            elif kind == "ready":
                payload.state.healthy = True
                self._start(now, payload)
        return [self.records[r.request_id] for r in requests]

    def _arrival(self, now: float, req: Request, truths) -> None:
        self.arrivals_in_interval += 1
        feats, truth = self.features(req)
        truths[req.request_id] = truth
        self.state.observe(feats, self.policy.variants)
        d = self.policy.route(feats, self.state, now)
        rec = Record(req.request_id, now, feats.deadline_s, d.variant, None, 0.0)
        self.records[req.request_id] = rec
        if d.variant is None:
            return
        self.state.apply(feats, d, self.policy.variants)
        w = next(w for w in self.workers if w.state.name == d.worker)
        w.queue.append((req.request_id, d))
        if w.busy_until <= now:
            self._start(now, w)

    def _start(self, now: float, w: SimWorker) -> None:
        if not w.queue or w.busy_until > now:
            return
        if now < w.available_at:  # loading another model family
            self._push(w.available_at, "ready", w)
            return
        variant = w.queue[0][1].variant
        batch = []
        for item in list(w.queue):
            if item[1].variant == variant and len(batch) < self.cfg.max_batch:
                batch.append(item)
        for item in batch:
            w.queue.remove(item)
        lat = self.profile.variants[variant].latency_ms
        sizes = sorted(b for b in lat if b >= len(batch)) or [max(lat)]
        b = sizes[0]
        duration = lat[b] / 1000.0 * (len(batch) / b if len(batch) > b else 1.0)
        w.busy_until = now + duration
        self._push(w.busy_until, "done", (w, batch))

    def _done(self, now: float, payload, truths) -> None:
        w, batch = payload
        for rid, decision in batch:
            rec = self.records[rid]
            rec.finish_s = now
            rec.quality = truths[rid][decision.variant]
            self.state.release(decision)
        self._start(now, w)

    def _replan(self, now: float) -> None:
        self.forecaster.observe(self.arrivals_in_interval / self.cfg.plan_interval_s)
        self.arrivals_in_interval = 0
        total = self.class_counts.sum()
        mix = self.class_counts / total if total else np.full(len(self.class_counts), 1 / len(self.class_counts))
        self.class_counts *= 0.5  # recent traffic weighs more
        previous: dict[str, int] = {}
        for w in self.workers:
            previous[w.state.family] = previous.get(w.state.family, 0) + 1
        plan = self.policy.replan(self.forecaster.forecast(1), mix, len(self.workers), previous, self.state.observed_availability())
        if plan is None:
            return
        new = assign_families([w.state.family for w in self.workers], plan.workers)
        for w, fam in zip(self.workers, new):
            if fam != w.state.family:
                w.state.family = fam
                load = max((vp.load_time_s for v, vp in self.profile.variants.items() if family_of(v) == fam), default=0.0)
                w.available_at = max(now, w.busy_until) + load
                if load > 0:
                    w.state.healthy = False  # out of routing while the model loads
                    self._push(w.available_at, "ready", w)
