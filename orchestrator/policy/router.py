"""Per-request routing as pure functions of (request features, cluster state, plan).

The live front door and the simulator build the same ``RequestFeatures`` and ``ClusterState``
and call the same functions, so a policy behaves identically in both.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from orchestrator.profile.schema import Profile


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
    sources: dict[str, int] = dataclasses.field(default_factory=dict)
    """K variant -> the cache entry to resume from, where a pair predictor chose it (else the most similar)."""
    min_quality: float | None = None
    """The client's floor on predicted relative quality: ``available`` already excludes variants below it."""


@dataclasses.dataclass
class WorkerState:
    name: str
    family: str
    """Model family it currently serves ('base' serves every k variant, 'fast' the fast model)."""
    backlog_s: float = 0.0
    """Estimated seconds of work queued or running on it."""
    healthy: bool = True
    slowdown: float = 1.0
    """EWMA of observed / predicted time to completion of its requests: how much slower than the
    profile it really is (batches that do not fill, variants sharing its cores, the front door's own
    work). Estimates are scaled by it, so overload is detected from facts, not only from the profile."""
    slowdown_dev: float = 0.0
    """EWMA of |observed / predicted - slowdown|: how far single completions scatter around the
    mean (Jacobson's RTT variance). Deadlines are checked against the mean plus a few of these, so
    an admitted request meets its SLO in the tail, not only on average."""
    disabled: set[str] = dataclasses.field(default_factory=set)
    """Variants out of this worker's routing (one timed out here: a stuck or slow model)."""
    busy_since_s: float = 0.0
    """When the worker's current work started: its last completion, or the booking that found it
    idle. ``backlog_s`` drains from then (``remaining_s``)."""
    colocated: frozenset[str] = frozenset()
    """Model families whose weights this worker holds besides ``family``'s (a CPU worker serving the
    whole repository; a GPU with memory for both models): it serves their variants too, from the
    same queue, and switching to one loads nothing. Empty: one family at a time (a switch loads)."""

    def hosts(self, family: str) -> bool:
        return family == self.family or family in self.colocated

    def remaining_s(self, now_s: float) -> float:
        """Booked work left now, in profile seconds: the backlog less what the worker has run since
        its current work started (at its observed speed). The booking of a running batch leaves the
        backlog only when the batch completes; counting it in full until then had requests that
        arrived near its end routed as if it had just started (to the fast model, or shed)."""
        return max(0.0, self.backlog_s - max(0.0, now_s - self.busy_since_s) / max(self.slowdown, 1e-3))

    def tail_slowdown(self, devs: float) -> float:
        """The slowdown a deadline is checked against: the mean plus ``devs`` deviations."""
        return self.slowdown + devs * self.slowdown_dev

    def congestion_price(self, slo_s: float, weight: float, now_s: float) -> float:
        """Quality points one k0 image of this worker's time is worth now: ``weight`` x its queue (as
        the router expects it to run) over the SLO. 0 when idle."""
        return weight * self.remaining_s(now_s) * self.slowdown / max(slo_s, 1e-9)

    def serves(self, variant: str) -> bool:
        return self.healthy and self.hosts(family_of(variant)) and variant not in self.disabled


@dataclasses.dataclass
class ClusterState:
    workers: list[WorkerState]
    served: np.ndarray
    """(classes, variants) requests routed so far, for following the plan's mix."""
    price: np.ndarray | None = None
    """(classes,) price of worker time (in units of one k0 image) for prompt-aware routing; with
    ``price_per_class`` off (the default) only ``price[0]`` is used, by every class."""

    price_per_class: bool = False
    """One plan price per prompt class (True) or one for the whole cluster (False, the default).
    The plan fixes each class's budget from class means, but prompts within a class differ: with
    one price, each request's step moves it by (its cost - its class's budget), so it settles
    where the plan's total budget is spent, on the prompts that lose least in any class (the
    capacity constraint's one Lagrange multiplier). Measured by ``argus bench sweep`` at 2x, 5
    seeds (2026-12-07, sixth session): HADIS fast/heavy argus 0.940 -> 0.944 at 0% late (3x 0.914 ->
    0.920); world stream 0.951 -> 0.952 at 0.0% (3x 0.7% at 0.939 -> 0.6% at 0.941)."""

    price_step: float = 0.005
    """Dual-ascent step of the plan price, per request, per k0 image spent above the plan's
    budget. The price is argus's threshold between prompts, so its jitter reorders them: with 0.05
    a request's predicted loss competed with a price that moved by up to 0.05 per request, and the
    bursts this step once had to follow are the burst and congestion prices' job now. Measured at
    0.05 -> 0.005 (a throwaway script replaying the sweeps' 2x workloads, stage-6 ground truth):
    world stream 1.24% -> 0.94% late at 0.929 -> 0.934 (5 seeds; 3x: 0.81% -> 0.91% at 0.891 ->
    0.897); HADIS fast/heavy 0.934 -> 0.940 at 0% late (3 seeds). ``argus bench weights`` measures it."""

    slowdown_weight: float = 0.1
    """Weight of each completion in a worker's slowdown (EWMA of observed / predicted time to
    completion); 0 leaves estimates to the profile. On by default: the profile is measured at one
    time on a shared machine whose speed drifts (k0 took 334 ms one day and 430 ms the next), and
    only observed completions tell the router how fast the worker is now. The prediction it corrects
    includes the front door's per-request cost and the probe's worker time (``FrontDoorCost``)."""

    tail_devs: float = 2.0
    """Deviations of the slowdown added when checking a deadline (``WorkerState.tail_slowdown``).
    On a shared machine single completions scatter widely around the mean (batches that start just
    before a request arrives, the front door's work on the same cores): with the mean alone, about
    one admitted request in six missed its SLO under a 5x overload; the tail keeps that near the
    SLO. 0 checks deadlines against the mean."""

    fallback_devs: float = 0.0
    """When no variant meets a request's deadline in the tail (``tail_devs``), deviations of the
    slowdown a second, looser check adds before the request is shed (``route_planned``). 0: the
    mean; ``tail_devs`` or more: no second check. Simulated on the live twitter stream (speeds
    0.9-1.3x) argus's violations were 2.3% without it, 1.4% at 0, 1.6% at 1. Under the 5x overload
    of ``tests/triton/test_reliability.py`` it lets more requests in on the mean: 94% of served
    ones met the SLO at 0 (95% with the tail alone, 80% with the mean alone)."""

    congestion_weight: float = 1.0
    """Prompt-aware routing prices a worker's time by the plan price plus this times the
    worker's queue as a fraction of the SLO (``congestion_price``): a drift-plus-penalty rule, so a
    request that would lose next to nothing on a cheaper variant takes it while a queue is building,
    rather than a k0 that fills the queue and leaves the burst behind it the fast model or a missed
    deadline. The plan's price moves once per request and so lags a burst: live, argus sent
    requests to k0 for 0.002 of predicted quality at price 0 with 0.67 s queued, then the next ones
    to the fast model (0.37 measured quality) because no K variant met their deadline any more. 0:
    the plan's price alone."""

    burst_weight: float = 0.3
    """Prompt-aware routing also prices worker time by this times the probability that the next
    arrival waits longer than its slack for a k0 image (``burst_price``: Erlang C at the recent
    arrival rate, times the wait's tail beyond the slack). The congestion price is 0 on an idle
    worker, so a request arriving at the start of a burst took k0 for 0.001 of predicted quality
    and left the next ones the fast model or a shed. Simulated on the live twitter stream (one CPU
    worker, speeds 0.9-1.3x): violations 2.1% -> 1.4% at quality 0.959 -> 0.958; live, argus 0.0%
    at 0.995 (README). At paper scale (8 simulated workers): 2x load 1.1% / 0.982 -> 0.9% / 0.977,
    1x 0.999 -> 0.993 quality, and on the low-reuse trace 0.983 -> 0.953 with no violation to
    remove: it is traded against predicted quality, and the predictor rates K answers to prompts
    unlike its training ones nearly lossless. 0: off."""
    arrival_rate_rps: float = 0.0
    """Arrivals per second before the latest one, exponentially decayed with a time constant of
    one SLO (``observe``): how bursty the traffic is right now, which the plan's price (one
    forecast per interval) cannot see."""
    last_arrival_s: float | None = None

    seen: np.ndarray | None = None
    """(classes,) recent arrivals per class (decayed at each replan): the class mix, and the
    denominator of observed availability."""
    hits: np.ndarray | None = None
    """(classes, variants) of those, how many found each variant available."""

    def __post_init__(self):
        if self.price is None:
            self.price = np.zeros(self.served.shape[0])
        if self.seen is None:
            self.seen = np.zeros(self.served.shape[0])
        if self.hits is None:
            self.hits = np.zeros_like(self.served, dtype=float)

    def observe(self, req: RequestFeatures, variants: list[str]) -> None:
        """Count an arrival's class and which variants it found available, and update the recent arrival rate."""
        tau_s = max(req.deadline_s - req.arrival_s, 1e-3)
        if self.last_arrival_s is not None:
            gap_s = max(req.arrival_s - self.last_arrival_s, 0.0)
            self.arrival_rate_rps = (self.arrival_rate_rps + 1.0 / tau_s) * math.exp(-gap_s / tau_s)
        self.last_arrival_s = req.arrival_s
        self.seen[req.prompt_class] += 1
        for j, v in enumerate(variants):
            if v in req.available:
                self.hits[req.prompt_class, j] += 1

    def observed_availability(self, min_seen: float = 5.0) -> np.ndarray:
        """Per class and variant, the fraction of recent arrivals that found it available (NaN
        where a class has fewer than ``min_seen`` recent arrivals)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.seen[:, None] >= min_seen, self.hits / self.seen[:, None], np.nan)

    def price_class(self, prompt_class: int) -> int:
        """Which entry of ``price`` a class's requests read and move (0 for all unless ``price_per_class``)."""
        return prompt_class if self.price_per_class else 0

    def class_mix(self) -> np.ndarray:
        """Share of recent arrivals per prompt class (uniform before any arrival)."""
        total = float(self.seen.sum())
        return self.seen / total if total > 0 else np.full(len(self.seen), 1.0 / len(self.seen))

    def burst_price(self, k0_s: float, slack_s: float = 0.0) -> float:
        """``burst_weight`` x the chance that the next arrival waits longer than ``slack_s`` for a
        k0 image: Erlang C of the healthy workers at the recent arrival rate, each request counted
        as one k0 image (``k0_s`` seconds), times the M/M/c tail of the wait beyond the slack. One
        worker: about its utilization; pooled workers: near 0 until the cluster nears saturation.
        Past saturation: the whole weight."""
        if self.burst_weight <= 0:
            return 0.0
        servers = max(1, sum(w.healthy for w in self.workers))
        offered = self.arrival_rate_rps * k0_s
        return self.burst_weight * erlang_c(servers, offered) * math.exp(-max(servers - offered, 0.0) * slack_s / max(k0_s, 1e-9))

    def family_counts(self) -> dict[str, int]:
        """Workers per model family now (the plan's starting point: moving one may load a model)."""
        out: dict[str, int] = {}
        for w in self.workers:
            out[w.family] = out.get(w.family, 0) + 1
        return out

    def decay(self, factor: float = 0.5) -> None:
        """Age the arrival counts once per plan interval, so recent traffic weighs more."""
        self.seen *= factor
        self.hits *= factor

    def worker(self, name: str) -> WorkerState:
        return next(w for w in self.workers if w.name == name)

    def servable(self, variants) -> frozenset[str]:
        """The variants some healthy worker can run now, whatever family it is assigned: a family
        switch is a plan away, a dead worker or a disabled variant is not."""
        return frozenset(v for v in variants if any(w.healthy and v not in w.disabled for w in self.workers))

    def apply(self, req: RequestFeatures, decision: Decision, variants: list[str], now_s: float) -> None:
        """Book a decision: the class's served count and the plan price move, its work joins the worker's
        backlog (the caller holds any lock)."""
        if decision.variant is None:
            return
        if decision.variant in variants:  # a quality floor's k0 may be outside the policy's own set (Clipper-HT)
            self.served[req.prompt_class, variants.index(decision.variant)] += 1
        c = self.price_class(req.prompt_class)
        self.price[c] = max(0.0, self.price[c] + decision.price_delta)
        w = self.worker(decision.worker)
        if w.backlog_s <= 0:
            w.busy_since_s = now_s  # idle: its new work starts now
        w.backlog_s += decision.booked_s

    def release(self, decision: Decision, now_s: float, observed_s: float | None = None) -> float:
        """The booked work of a finished (or failed) request leaves its worker's backlog, and the
        worker's next work starts now; with ``observed_s`` (decision to completion, for a served
        request) the worker's slowdown learns from it. Returns the backlog."""
        w = self.worker(decision.worker)
        w.backlog_s = max(0.0, w.backlog_s - decision.booked_s)
        w.busy_since_s = now_s
        if observed_s is not None and decision.eta_s > 0 and self.slowdown_weight > 0:
            error = min(max(observed_s / decision.eta_s, SLOWDOWN_RANGE[0]), SLOWDOWN_RANGE[1]) - w.slowdown
            w.slowdown += self.slowdown_weight * error
            w.slowdown_dev += self.slowdown_weight * (abs(error) - w.slowdown_dev)
        return w.backlog_s


@dataclasses.dataclass(frozen=True)
class Decision:
    variant: str | None
    """None: shed (RESOURCE_EXHAUSTED)."""
    worker: str | None
    reason: str
    predicted_quality: float = 0.0
    booked_s: float = 0.0
    """Work added to the worker's backlog for this request (removed when it completes)."""
    price_delta: float = 0.0
    """How the plan price moves after this decision (spent more than the plan's budget: up)."""
    eta_s: float = 0.0
    """Predicted seconds from the decision to completion, from the profile alone (backlog + service),
    what the worker's slowdown compares the observed time with."""


SLOWDOWN_RANGE = (0.5, 4.0)
"""One completion's observed/predicted ratio is clipped to this range (a lone outlier must not swing routing)."""


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue of ``servers`` at ``offered`` Erlangs
    (1 at or past saturation)."""
    if offered >= servers:
        return 1.0
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    wait = term * offered / (servers - offered)  # a^c / c! x c / (c - a)
    return wait / (total + wait)


def family_of(variant: str) -> str:
    return "fast" if variant == "fast" else "base"


def service_s(profile: Profile, variant: str) -> float:
    """Seconds from arrival to answer of one request alone: its batch of one plus the front door's
    per-request cost (probe, decision, gRPC hops)."""
    lat = profile.variants[variant].latency_ms
    return lat[min(lat)] / 1000.0 + profile.frontdoor.per_request_s


def booked_s(profile: Profile, variant: str, slo_ms: float) -> float:
    """Worker seconds one request adds to the backlog: its share of a batch of the largest size
    that still fits the SLO (under load, requests queued for one variant run together), and its
    probe (which runs on the same cores)."""
    lat = profile.variants[variant].latency_ms
    fits = [b for b, ms in lat.items() if ms <= slo_ms] or [min(lat)]
    b = max(fits)
    return lat[b] / 1000.0 / b + profile.frontdoor.probe_ms / 1000.0


def best_worker(state: ClusterState, variant: str) -> WorkerState | None:
    """The healthy worker serving this variant with the least booked backlog, as corrected by its
    slowdown. Booked, not drained (``remaining_s``): ranked by the drained estimate, 8 simulated
    workers at twice their k0 capacity served 0.935 mean quality against 0.982, as a worker whose
    running batch was nearly done took the requests queued behind it."""
    ws = [w for w in state.workers if w.serves(variant)]
    return min(ws, key=lambda w: (w.backlog_s * w.slowdown, w.name)) if ws else None


def estimate(profile: Profile, state: ClusterState, variant: str, now_s: float, devs: float | None = None) -> tuple[WorkerState | None, float]:
    """(worker, seconds until this variant would finish on it in the tail): the profile's estimate
    times the worker's observed slowdown plus ``devs`` of its scatter (default ``ClusterState.tail_devs``)."""
    w = best_worker(state, variant)
    devs = state.tail_devs if devs is None else devs
    return (w, float("inf")) if w is None else (w, w.tail_slowdown(devs) * profile_eta_s(profile, w, variant, now_s))


def profile_eta_s(profile: Profile, w: WorkerState, variant: str, now_s: float) -> float:
    """Seconds until ``variant`` would finish on ``w`` by the profile alone (work left + batch-of-one latency)."""
    return w.remaining_s(now_s) + service_s(profile, variant)


def route_fixed(req: RequestFeatures, state: ClusterState, profile: Profile, variant: str, now_s: float) -> Decision:
    """One variant, whatever the load (Clipper-HA/HT, NIRVANA's choice); shed only when no healthy worker serves it."""
    w = best_worker(state, variant)
    if w is None:
        return Decision(None, None, f"no healthy worker serves {variant}")
    return Decision(variant, w.name, "fixed", req.predicted_quality.get(variant, 0.0),
                    booked_s=booked_s(profile, variant, 1000.0 * (req.deadline_s - req.arrival_s)), eta_s=profile_eta_s(profile, w, variant, now_s))


def relative_cost(profile: Profile, variant: str, slo_ms: float) -> float:
    """Worker time of one image of ``variant`` in units of one k0 image (at the SLO's best batch)."""
    return profile.variants["k0"].throughput(slo_ms) / profile.variants[variant].throughput(slo_ms)


def expected_utility(predicted_quality: float, cost: float, price: float) -> float:
    """argus's one decision rule: a variant's predicted quality minus the price of the worker time
    it uses (``cost`` in k0 images), maximised over the variants that meet the deadline."""
    return predicted_quality - price * cost


def time_price(state: ClusterState, profile: Profile, prompt_class: int, workers, slo_s: float, now_s: float) -> dict[str, float]:
    """Per worker, quality points one k0 image of its time is worth now: the plan price (dual
    ascent on the plan's budget, moved once per request; one for all classes by default), the
    burst price (the chance the next arrival waits past its slack, which the plan cannot see) and
    the worker's queue (congestion).
    The first two are the request's, computed once (the burst price sums an Erlang C series)."""
    k0_s = service_s(profile, "k0")
    plan = float(state.price[state.price_class(prompt_class)])
    shared = plan + state.burst_price(k0_s, max(0.0, slo_s - k0_s))  # slack: the wait k0 still allows
    return {w.name: shared + w.congestion_price(slo_s, state.congestion_weight, now_s) for w in workers}


def route_planned(
    req: RequestFeatures,
    state: ClusterState,
    profile: Profile,
    variants: list[str],
    target: dict[str, float],
    now_s: float,
    prompt_aware: bool,
) -> Decision:
    """Follow the plan for the request's class, within what meets the deadline.

    Prompt-aware (argus): one rule, ``expected_utility``: each request takes the variant that
    meets its deadline in the tail and maximises predicted quality - ``time_price`` x relative
    cost. The plan fixes each class's budget of worker time per request (sum of target share x
    relative cost), and the plan price rises when a request spends above its class's budget and
    falls below it (dual ascent; one price for all classes unless ``price_per_class``); the burst
    and congestion parts raise it while arrivals outrun the workers. So prompts that lose little
    take the cheap variants and prompts that lose much keep full quality, at the plan's total
    cost, and fewer keep it while a queue builds.
    Prompt-agnostic (proteus): follow the plan's shares (largest deficit first).
    A plan that cannot be followed in time falls back to the feasible variant with the least
    predicted quality loss. Feasible means on time in the tail (``ClusterState.tail_devs``); when
    no variant is, on time by the looser ``fallback_devs`` (the mean): a shed is a certain
    violation, an answer expected in time a likely success (live, 4 of argus's 5 violations in one
    run were sheds in a burst that NIRVANA served in time). Only when no variant passes either is
    the request shed.
    """
    row = state.served[req.prompt_class]
    total = max(float(row.sum()), 1.0)
    feasible = []
    for devs in dict.fromkeys((state.tail_devs, min(state.fallback_devs, state.tail_devs))):  # one check when they coincide
        for j, v in enumerate(variants):
            if v not in req.available:
                continue
            w, eta = estimate(profile, state, v, now_s, devs)
            if w is not None and now_s + eta <= req.deadline_s:
                feasible.append((v, j, w, eta))
        if feasible:
            break
    if not feasible:
        return Decision(None, None, "no variant can meet the deadline")
    slo_ms = 1000.0 * (req.deadline_s - req.arrival_s)
    if prompt_aware:
        slo_s = slo_ms / 1000.0
        cost = {f[0]: relative_cost(profile, f[0], slo_ms) for f in feasible}
        budget = sum(share * relative_cost(profile, v, slo_ms) for v, share in target.items() if v in profile.variants)
        price = time_price(state, profile, req.prompt_class, {f[2].name: f[2] for f in feasible}.values(), slo_s, now_s)
        v, _, w, eta = max(feasible, key=lambda f: (expected_utility(req.predicted_quality.get(f[0], 0.0), cost[f[0]], price[f[2].name]),
                                                    -cost[f[0]]))
        planned = any(target.get(f[0], 0.0) > 0 for f in feasible)
        reason = "plan (price)" if planned else "redirect: planned variants saturated"
        return Decision(v, w.name, reason, req.predicted_quality.get(v, 0.0), booked_s=booked_s(profile, v, slo_ms),
                        price_delta=state.price_step * (relative_cost(profile, v, slo_ms) - budget), eta_s=profile_eta_s(profile, w, v, now_s))
    planned = [f for f in feasible if target.get(f[0], 0.0) > 0]
    if planned:
        v, _, w, eta = max(planned, key=lambda f: target.get(f[0], 0.0) - row[f[1]] / total)
        reason = "plan"
    else:
        v, _, w, eta = max(feasible, key=lambda f: (req.predicted_quality.get(f[0], 0.0), -f[3]))
        reason = "redirect: planned variants saturated"
    return Decision(v, w.name, reason, req.predicted_quality.get(v, 0.0), booked_s=booked_s(profile, v, slo_ms),
                    eta_s=profile_eta_s(profile, w, v, now_s))


def next_batch(profile: Profile, queued: list[tuple[str, float]], max_batch: int) -> list[int]:
    """Which of a worker's queued requests ((variant, SLO ms), first come first) run next, together:
    the head's variant, every queued request of it up to the largest batch that fits the head's SLO.
    One batch at a time, as the simulator's worker and the front door's dispatch gate both run."""
    if not queued:
        return []
    variant, slo_ms = queued[0]
    limit = profile.variants[variant].max_batch(slo_ms, max_batch)
    return [i for i, (v, _) in enumerate(queued) if v == variant][:limit]


def assign_families(current: list[str], wanted_counts: dict[str, int], backlog_s: list[float] | None = None) -> list[str]:
    """New family per worker for a plan, moving as few workers as possible (each move may load a model),
    and of those that must move, the least backlogged first (a moved worker finishes its queue before
    it can load the new model, so moving a busy one delays both its queue and the new capacity).

    Workers beyond the plan's total keep serving the base model."""
    wanted: list[str] = [f for f, n in sorted(wanted_counts.items()) for _ in range(n)]
    wanted += ["base"] * (len(current) - len(wanted))
    out: list[str | None] = [None] * len(current)
    backlog = backlog_s or [0.0] * len(current)
    # Keep the busiest workers on their family: they are the costliest to move.
    for i in sorted(range(len(current)), key=lambda i: (-backlog[i], i)):
        if current[i] in wanted:
            wanted.remove(current[i])
            out[i] = current[i]
    for i in range(len(current)):
        if out[i] is None:
            out[i] = wanted.pop(0)
    return out  # type: ignore[return-value]
