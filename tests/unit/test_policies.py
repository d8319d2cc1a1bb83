"""Unit tests (fakes only, fake clock) for the forecaster, predictor, router and policies."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from orchestrator.policy.base import POLICIES, PolicyContext
from orchestrator.policy.classes import PromptClasses
from orchestrator.policy.control import ControlInput
from orchestrator.policy.forecast import HoltForecaster
from orchestrator.policy.predictor import QualityPredictor, evaluate_predictor
from orchestrator.policy.registry import make_policy
from orchestrator.policy.router import ClusterState, RequestFeatures, WorkerState
from orchestrator.profile.schema import Profile, QualityTable, VariantProfile

VARIANTS = ["k0", "k10", "k25", "fast"]


def fake_profile(n=200, seed=0) -> Profile:
    """Two prompt populations: 'robust' ones lose little at high K, 'fragile' ones lose a lot."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 16))
    fragile = emb[:, 0] > 0
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = {v: rng.uniform(0.6, 1.0, n) for v in ("k10", "k25")}
    rq = {
        "k10": np.where(fragile, 0.85, 0.98) - 0.2 * (1 - sim["k10"]),
        "k25": np.where(fragile, 0.6, 0.95) - 0.3 * (1 - sim["k25"]),
        "fast": np.where(fragile, 0.7, 0.8),
    }
    lat = {"k0": 1000.0, "k10": 800.0, "k25": 500.0, "fast": 300.0}
    variants = {v: VariantProfile(v, int(v[1:]) if v != "fast" else 0, f"t2i_{v}", {1: lat[v], 4: 3 * lat[v]}, 8.0 if v == "fast" else 0.0,
                                  needs_cache=v in ("k10", "k25")) for v in VARIANTS}
    table = QualityTable([f"p{i}" for i in range(n)], emb.astype(np.float32), {k: v.astype(np.float32) for k, v in rq.items()},
                         {k: v.astype(np.float32) for k, v in sim.items()})
    return Profile(variants, table, {10: 0.75, 25: 0.9}, source="unit-test fake")


def ctx(profile=None):
    profile = profile or fake_profile()
    return PolicyContext(profile, QualityPredictor.fit(profile.quality), PromptClasses.fit(profile.quality.embeddings, k=4), slo_ms=5000)


def plan(policy, demand_rps, num_workers=2, previous=None, classes=4, interval_s=2.0):
    """One replan with a uniform class mix and no observed availability (the profile's)."""
    nan = np.full((classes, len(policy.variants)), np.nan)
    return policy.replan(ControlInput(demand_rps, np.full(classes, 1.0 / classes), num_workers, previous, nan, interval_s))


def request(deadline=10.0, available=("k0", "k10", "k25", "fast"), quality=None, cls=0):
    q = quality or {"k0": 1.0, "k10": 0.95, "k25": 0.9, "fast": 0.7}
    return RequestFeatures("r", 0.0, deadline, cls, q, frozenset(available))


def state(backlog=0.0, families=("base", "base")):
    return ClusterState([WorkerState(f"w{i}", f, backlog) for i, f in enumerate(families)], np.zeros((4, len(VARIANTS))))


def test_forecaster_follows_ramps_and_jumps_on_bursts():
    f = HoltForecaster()
    for r in (10, 12, 14, 16, 18):
        f.observe(r)
    assert f.trend_rps_per_step > 0 and f.forecast(1) > f.level_rps
    assert 18 < f.forecast(3) < 26  # the trend carries it past the last sample
    f.observe(60)
    assert f.bursting and f.forecast(1) >= 60
    with pytest.raises(ValueError):
        f.observe(-1)


def test_predictor_beats_the_mean_and_mostly_agrees_with_the_oracle():
    report = evaluate_predictor(fake_profile(400))
    for v in ("k10", "k25", "fast"):
        assert report["mae"][v] < 0.5 * report["mae_of_mean_baseline"][v]
    assert report["oracle_agreement"] > 0.8


def test_registry_has_every_policy_and_rejects_unknown():
    assert set(POLICIES) == {"argus", "argus-noprompt", "clipper-ha", "clipper-ht", "nirvana", "proteus"}
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("best", ctx())


def test_clipper_ha_never_approximates_even_when_late():
    p = make_policy("clipper-ha", ctx())
    d = p.route(request(deadline=0.1), state(backlog=100.0), now_s=0.0)
    assert d.variant == "k0"


def test_clipper_ht_always_takes_the_fastest():
    p = make_policy("clipper-ht", ctx())
    assert p.route(request(), state(families=("fast",)), 0.0).variant == "fast"


def test_nirvana_takes_the_largest_cached_k_regardless_of_load():
    p = make_policy("nirvana", ctx())
    assert p.route(request(available=("k0", "k10", "k25")), state(), 0.0).variant == "k25"
    assert p.route(request(available=("k0", "k10")), state(), 0.0).variant == "k10"
    assert p.route(request(available=("k0",)), state(), 0.0).variant == "k0"


def test_argus_serves_full_quality_at_low_load_and_approximates_under_load():
    p = make_policy("argus", ctx())
    low = plan(p, 1.0)
    assert low.expected_quality == pytest.approx(1.0)
    assert p.route(request(), state(), 0.0).variant == "k0"
    high = plan(p, 2.5, previous={"base": 2})
    assert high.expected_quality < 1.0 and high.shed.max() < 1e-6
    st = state(families=tuple(["base"] * high.workers.get("base", 0) + ["fast"] * high.workers.get("fast", 0)))
    robust = {"k0": 1.0, "k10": 0.99, "k25": 0.97, "fast": 0.8}
    fragile = {"k0": 1.0, "k10": 0.85, "k25": 0.6, "fast": 0.6}
    picks = {"robust": [], "fragile": []}
    for i in range(200):  # a stream: the class price rises until spending fits the plan's budget
        kind = "robust" if i % 2 else "fragile"
        req = request(cls=0, quality=robust if kind == "robust" else fragile)
        d = p.route(req, st, 0.0)
        st.apply(req, d, p.variants, 0.0)
        st.release(d, 0.0)  # each request finishes before the next arrives
        picks[kind].append(d.variant)
    tail = {k: v[-50:] for k, v in picks.items()}
    assert sum(v != "k0" for v in tail["robust"]) > 25  # robust prompts take the approximations
    # Per prompt beats per class: the same stream sent by the class's planned mix scores lower.
    realized = np.mean([robust[v] for v in tail["robust"]] + [fragile[v] for v in tail["fragile"]])
    planned = sum(share * (robust[v] + fragile[v]) / 2 for v, share in high.target(0).items())
    assert realized > planned


def test_router_deadline_logic_redirects_then_sheds():
    p = make_policy("argus", ctx())
    plan(p, 1.0)  # plan: all k0
    # k0 needs 1.0 s after a 0.5 s backlog; deadline 1.2 s: redirect to the best feasible (k25: 1.0 s).
    d = p.route(request(deadline=1.2), state(backlog=0.5), now_s=0.0)
    assert d.variant == "k25" and d.reason.startswith("redirect")
    # Nothing fits in 0.4 s on base workers, and no fast worker exists: shed.
    d = p.route(request(deadline=0.4), state(backlog=0.5), now_s=0.0)
    assert d.variant is None
    # The same request 0.3 s later on the fake clock, behind 0.5 s of work that only starts then
    # (a completion at 0.3 s), has less slack: the deadline is absolute.
    later = state(backlog=0.5)
    for w in later.workers:
        w.busy_since_s = 0.3
    assert p.route(request(deadline=1.2), later, now_s=0.3).variant is None


def test_proteus_is_prompt_agnostic():
    p = make_policy("proteus", ctx())
    assert set(p.variants) == {"k0", "fast"}
    assert plan(p, 5.0).fractions.shape[0] == 1


def test_booking_and_release_move_the_worker_backlog():
    p = make_policy("clipper-ha", ctx())
    st = state()
    req = request()
    d = p.route(req, st, 0.0)
    st.apply(req, d, p.variants, 0.0)
    from orchestrator.policy.router import booked_s

    # Booked: k0's share of the largest batch that fits the SLO (at most its batch-1 latency, 1 s here).
    assert d.booked_s == pytest.approx(booked_s(p.ctx.profile, "k0", 1000 * (req.deadline_s - req.arrival_s)))
    assert 0 < d.booked_s <= 1.0
    assert st.worker(d.worker).backlog_s == pytest.approx(d.booked_s) and st.served[0, p.variants.index("k0")] == 1
    assert st.release(d, 0.0) == 0.0


def test_desired_instances_follow_the_plan():
    from orchestrator.triton.control import desired_instances

    variants = ["k0", "k10", "k25", "fast"]
    fr = np.array([[0.2, 0.1, 0.7, 0.0], [0.0, 0.0, 0.5, 0.5]])
    base = desired_instances("base", variants, fr, np.array([0.5, 0.5]))
    assert base == {"denoiser_k0": 1, "denoiser_k10": 1, "denoiser_k25": 2}
    assert desired_instances("fast", variants, fr, np.array([0.5, 0.5])) == {"denoiser_fast": 2}


def test_observed_slowdown_corrects_the_estimates_and_can_make_a_variant_infeasible():
    from orchestrator.policy.router import SLOWDOWN_RANGE, estimate

    prof = fake_profile()
    p = make_policy("clipper-ha", ctx(prof))
    st = state(families=("base",))
    st.slowdown_weight = 0.2
    _, eta = estimate(prof, st, "k0", 0.0)
    assert eta == pytest.approx(1.0)
    for _ in range(30):  # every request took 3x what the profile predicted
        d = p.route(request(), st, 0.0)
        st.apply(request(), d, p.variants, 0.0)
        st.release(d, 0.0, observed_s=3.0 * d.eta_s)
    w = st.worker("w0")
    assert w.slowdown == pytest.approx(3.0, rel=0.01)
    assert w.slowdown_dev < 0.02, "steady completions: the scatter decays"
    assert estimate(prof, st, "k0", 0.0)[1] == pytest.approx(w.slowdown + st.tail_devs * w.slowdown_dev)
    assert estimate(prof, st, "k0", 0.0)[1] == pytest.approx(3.0, rel=0.02)
    st.release(dataclasses.replace(d), 0.0, observed_s=1000 * d.eta_s)  # one outlier moves it by at most the clipped step
    assert w.slowdown <= 3.0 + st.slowdown_weight * (SLOWDOWN_RANGE[1] - 3.0) + 1e-9
    # argus: a deadline that the corrected estimate misses is not offered, though the profile's would meet it.
    a = make_policy("argus", ctx(prof))
    assert a.route(request(deadline=2.5), st, 0.0).variant != "k0"
    off = state(families=("base",))
    off.slowdown_weight = 0.0  # off: estimates stay the profile's
    off.release(d, 0.0, observed_s=3.0 * d.eta_s)
    assert off.worker("w0").slowdown == 1.0


def test_scattered_completions_widen_the_deadline_check():
    """Same mean slowdown, scattered single completions: the tail estimate is larger, so a deadline
    the mean would just meet is no longer offered; tail_devs=0 checks the mean alone."""
    from orchestrator.policy.router import estimate

    prof = fake_profile()
    p = make_policy("clipper-ha", ctx(prof))
    st = state(families=("base",))
    st.slowdown_weight = 0.2
    for i in range(40):  # completions alternate 0.5x and 1.5x the prediction: mean 1, scatter 0.5
        d = p.route(request(), st, 0.0)
        st.apply(request(), d, p.variants, 0.0)
        st.release(d, 0.0, observed_s=(0.5 if i % 2 else 1.5) * d.eta_s)
    w = st.worker("w0")
    assert w.slowdown == pytest.approx(1.0, abs=0.1)
    assert w.slowdown_dev == pytest.approx(0.5, abs=0.1)
    tail = estimate(prof, st, "k0", 0.0)[1]
    assert tail == pytest.approx(w.slowdown + st.tail_devs * w.slowdown_dev, rel=1e-6) and tail > 1.5
    st.tail_devs = 0.0
    assert estimate(prof, st, "k0", 0.0)[1] == pytest.approx(w.slowdown)
    assert state(families=("base",)).slowdown_weight > 0  # on by default


def test_a_plan_moves_the_least_backlogged_workers():
    from orchestrator.policy.router import assign_families

    assert assign_families(["base", "base", "base"], {"base": 2, "fast": 1}, [5.0, 0.5, 3.0]) == ["base", "fast", "base"]
    assert assign_families(["base", "base", "base"], {"base": 2, "fast": 1}) == ["base", "base", "fast"]  # no backlogs: the last
    assert assign_families(["fast", "base"], {"base": 2}, [9.0, 0.0]) == ["base", "base"]


def test_batch_latency_interpolates_and_max_batch_fits_the_slo():
    vp = fake_profile().variants["k0"]  # 1 s at batch 1, 3 s at batch 4
    assert vp.batch_latency_ms(1) == 1000.0 and vp.batch_latency_ms(2) == pytest.approx(1000 + 2000 / 3)
    assert vp.batch_latency_ms(4) == 3000.0 and vp.batch_latency_ms(8) == 6000.0
    assert vp.max_batch(2000.0, 8) == 2 and vp.max_batch(500.0, 8) == 1 and vp.max_batch(10_000.0, 8) == 8


def test_an_exact_cache_match_ties_k0_and_the_cheaper_variant_wins():
    c = ctx()
    pred = c.predictor.predict(c.profile.quality.embeddings[0], {"k10": 1.0, "k25": 1.0})
    assert pred["k10"] == pred["k25"] == pred["k0"] == 1.0
    assert make_policy("argus", c).route(request(quality=pred), state(), 0.0).variant == "k25"


def test_a_building_queue_prices_worker_time_so_near_lossless_variants_win():
    """At the plan's price 0, a prompt that loses 0.002 at k25 keeps k0 on an idle worker, but takes
    k25 once a queue builds (drift-plus-penalty); a prompt that loses much keeps k0 at the same
    queue; congestion_weight 0 is the plan's price alone."""
    p = make_policy("argus", ctx())
    nearly = {"k0": 1.0, "k10": 0.999, "k25": 0.998, "fast": 0.7}
    fragile = {"k0": 1.0, "k10": 0.8, "k25": 0.6, "fast": 0.5}
    assert p.route(request(quality=nearly), state(), 0.0).variant == "k0"
    queued = state(backlog=2.0)  # 2 s queued against a 10 s SLO
    assert queued.workers[0].congestion_price(10.0, 1.0, 0.0) == pytest.approx(0.2)
    assert p.route(request(quality=nearly), queued, 0.0).variant == "k25"
    assert p.route(request(quality=fragile), queued, 0.0).variant == "k0"
    queued.congestion_weight = 0.0
    assert p.route(request(quality=nearly), queued, 0.0).variant == "k0"


def test_argus_noprompt_sees_each_variants_mean_not_the_prompt():
    c = ctx()
    p = make_policy("argus-noprompt", c)
    q, _ = p._profile_tables
    assert np.allclose(q, q[0]) and q[0, p.variants.index("k0")] == 1.0  # every class the same row
    fragile = request(quality={"k0": 1.0, "k10": 0.5, "k25": 0.3, "fast": 0.2})
    robust = request(quality={"k0": 1.0, "k10": 0.999, "k25": 0.999, "fast": 0.9})
    st = state()
    st.price[:] = 0.5  # worker time is dear: argus treats the two prompts differently, the ablation cannot
    assert make_policy("argus", c).route(fragile, st, 0.0).variant != make_policy("argus", c).route(robust, st, 0.0).variant
    assert p.route(fragile, st, 0.0).variant == p.route(robust, st, 0.0).variant


def test_front_door_cost_is_in_the_estimates_the_backlog_and_the_simulated_batches():
    from orchestrator.policy.router import booked_s, estimate
    from orchestrator.profile.schema import FrontDoorCost
    from orchestrator.sim.simulator import batch_duration_s

    prof = fake_profile()
    st = state(families=("base",))
    bare_eta, bare_booked = estimate(prof, st, "k0", 0.0)[1], booked_s(prof, "k0", 5000.0)
    prof.frontdoor = FrontDoorCost(probe_ms=20.0, overhead_ms=30.0, mixed_slowdown=1.5)
    assert estimate(prof, st, "k0", 0.0)[1] == pytest.approx(bare_eta + 0.05)  # probe + overhead on every answer
    assert booked_s(prof, "k0", 5000.0) == pytest.approx(bare_booked + 0.02)  # only the probe is worker time
    assert batch_duration_s(prof, "k0", 4, mixed=False) == pytest.approx(3.0 + 4 * 0.02)
    assert batch_duration_s(prof, "k0", 4, mixed=True) == pytest.approx(4.5 + 4 * 0.02)
    back = Profile.from_json(json.loads(json.dumps(prof.to_json())))
    assert back.frontdoor == prof.frontdoor
    old = prof.to_json()
    del old["frontdoor"]  # a profile written before the front door's cost was measured
    assert Profile.from_json(old).frontdoor == FrontDoorCost()


def test_simulator_answers_later_by_the_front_door_overhead():
    from orchestrator.profile.schema import FrontDoorCost
    from orchestrator.sim.simulator import SimConfig, Simulator
    from orchestrator.sim.workload import Request

    prof = fake_profile()
    reqs = [Request("r0", 0.0, "a prompt", 0, 5000.0)]
    bare = Simulator(prof, make_policy("clipper-ha", ctx(prof)), SimConfig(1)).run(reqs)[0]
    prof.frontdoor = FrontDoorCost(probe_ms=20.0, overhead_ms=30.0)
    charged = Simulator(prof, make_policy("clipper-ha", ctx(prof)), SimConfig(1)).run(reqs)[0]
    assert charged.finish_s == pytest.approx(bare.finish_s + 0.05)


def test_a_scaled_profile_is_the_same_deployment_on_a_slower_machine(tmp_path):
    prof = fake_profile()
    prof.frontdoor = dataclasses.replace(prof.frontdoor, probe_ms=5.0, overhead_ms=2.0)
    slow = prof.scaled(1.25)
    for v, vp in prof.variants.items():
        assert slow.variants[v].latency_ms == {b: pytest.approx(1.25 * ms) for b, ms in vp.latency_ms.items()}
        assert slow.variants[v].load_time_s == vp.load_time_s
    assert (slow.frontdoor.probe_ms, slow.frontdoor.overhead_ms) == (pytest.approx(6.25), pytest.approx(2.5))
    assert slow.frontdoor.mixed_slowdown == prof.frontdoor.mixed_slowdown and slow.thresholds == prof.thresholds
    assert prof.variants["k0"].latency_ms[1] == fake_profile().variants["k0"].latency_ms[1], "the original is unchanged"
    slow.save(tmp_path / "p.json")
    assert "x1.250" in type(prof).load(tmp_path / "p.json").source


def test_a_worker_holding_both_families_serves_the_fast_model_without_a_switch():
    """Co-located families (a CPU worker serving the whole repository): a base worker whose queue
    makes every K variant miss the deadline still serves the fast model instead of shedding; a
    worker holding one family sheds."""
    from orchestrator.policy.router import WorkerState

    prof = fake_profile()
    a = make_policy("argus", ctx(prof))
    req = request(deadline=1.5, available=("k0", "fast"))
    alone = state(backlog=1.2, families=("base",))
    assert a.route(req, alone, 0.0).variant is None
    both = state(backlog=1.2, families=("base",))
    both.workers = [WorkerState(w.name, w.family, backlog_s=w.backlog_s, colocated=frozenset({"base", "fast"})) for w in both.workers]
    d = a.route(req, both, 0.0)
    assert d.variant == "fast" and d.worker == "w0"
    assert both.workers[0].serves("k0") and both.workers[0].serves("fast") and not alone.workers[0].serves("fast")


def test_simulated_colocated_worker_serves_fast_from_its_own_queue():
    from orchestrator.sim.simulator import SimConfig, Simulator
    from orchestrator.sim.workload import Request

    prof = fake_profile()
    reqs = [Request(f"r{i}", 0.05 * i, f"a red circle {i}", i, 1500.0) for i in range(12)]
    runs = {}
    for fams in ((), ("base", "fast")):
        sim = Simulator(prof, make_policy("argus", ctx(prof)), SimConfig(1, colocated_families=fams))
        recs = sim.run(reqs)
        runs[fams] = recs
        assert len(recs) == len(reqs) and all(r.variant is None or r.finish_s is not None for r in recs)
    served_fast = [r for r in runs[("base", "fast")] if r.variant == "fast"]
    assert served_fast, "the co-located worker takes the burst's overflow on the fast model"
    assert sum(r.variant is None for r in runs[("base", "fast")]) < sum(r.variant is None for r in runs[()])
    # Not every fast answer is on time in this 5x burst: the router books each arrival behind the
    # worker's queue, but the worker batches it with the fast requests already waiting, so the
    # batch grows and its head finishes late (notes: batch growth). None is lost, and the burst
    # gets no fewer answers in time than on a worker without the fast model.
    on_time = {fams: sum(r.finish_s is not None and r.finish_s <= r.deadline_s for r in recs) for fams, recs in runs.items()}
    assert on_time[("base", "fast")] >= on_time[()]


def test_booked_work_drains_while_the_worker_runs():
    """The booking of a running request leaves the backlog only when it completes; meanwhile the
    router counts what is left of it, at the worker's observed speed, so a request arriving near
    the end of a k0 is routed as if that k0 were nearly done, not just started."""
    from orchestrator.policy.router import estimate

    prof = fake_profile()
    p = make_policy("clipper-ha", ctx(prof))
    st = state(families=("base",))
    req = request()
    d = p.route(req, st, 0.0)
    st.apply(req, d, p.variants, 0.0)
    w = st.worker("w0")
    assert w.remaining_s(0.0) == pytest.approx(d.booked_s)
    assert w.remaining_s(0.6 * d.booked_s) == pytest.approx(0.4 * d.booked_s)
    assert w.remaining_s(5.0) == 0.0 and w.backlog_s == pytest.approx(d.booked_s)  # booked until released
    assert estimate(prof, st, "k0", 0.6 * d.booked_s)[1] == pytest.approx(0.4 * d.booked_s + 1.0)
    w.slowdown = 2.0  # a worker running at half the profile's speed has done half as much
    assert w.remaining_s(0.6 * d.booked_s) == pytest.approx(0.7 * d.booked_s)
    # A new request waits behind only what is left: with a 1.5 s SLO, argus keeps k0 (1 s) for a
    # request arriving late in the running one, and not for the same request at its start.
    a = make_policy("argus", ctx(prof))
    w.slowdown = 1.0
    t = 0.9 * d.booked_s
    late = RequestFeatures("r2", t, t + 1.5, 0, {"k0": 1.0, "k10": 0.5, "k25": 0.5, "fast": 0.5}, frozenset(VARIANTS))
    assert a.route(late, st, t).variant == "k0"
    assert a.route(dataclasses.replace(late, arrival_s=0.0, deadline_s=1.5), st, 0.0).variant != "k0"
    st.release(d, 2.0)
    assert w.backlog_s == 0.0 and w.busy_since_s == 2.0


def test_a_request_no_variant_serves_in_the_tail_is_tried_on_the_mean_before_it_is_shed():
    p = make_policy("argus", ctx())
    plan(p, 1.0)
    st = state(families=("base",))
    st.workers[0].slowdown_dev = 0.5  # scattered completions: the tail is 2x the mean
    # k25 alone takes 0.5 s: the tail (1.0 s) misses a 0.7 s deadline, the mean meets it.
    d = p.route(request(deadline=0.7), st, 0.0)
    assert d.variant == "k25"
    st.fallback_devs = st.tail_devs  # no looser second check: shed
    assert p.route(request(deadline=0.7), st, 0.0).variant is None
    st.fallback_devs, st.tail_devs = 0.0, 0.0
    assert p.route(request(deadline=0.7), st, 0.0).variant == "k25"
    assert p.route(request(deadline=0.4), st, 0.0).variant is None  # not even the mean: shed


def test_erlang_c():
    from orchestrator.policy.router import erlang_c

    assert erlang_c(1, 0.3) == pytest.approx(0.3)  # one server: its utilization
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(8, 3.2) < 0.05 < erlang_c(8, 6.0) < 1.0  # pooled servers rarely make an arrival wait
    assert erlang_c(4, 4.0) == erlang_c(4, 9.0) == 1.0


def test_a_burst_of_arrivals_prices_worker_time_before_a_queue_builds():
    """An idle worker has no congestion price, so a prompt that loses 0.002 at k25 keeps k0 when
    it arrives alone; right behind other arrivals, the next one is likely to wait for that k0
    longer than its slack, and the burst price sends it to k25. burst_weight 0: off."""
    p = make_policy("argus", ctx())
    nearly = {"k0": 1.0, "k10": 0.999, "k25": 0.998, "fast": 0.7}

    def arrival(t_s: float) -> RequestFeatures:
        return RequestFeatures(f"r{t_s}", t_s, t_s + 2.0, 0, nearly, frozenset(VARIANTS))  # SLO 2 s, k0 1 s

    def route_after(times: list[float], st: ClusterState) -> str:
        for t in times:
            st.observe(arrival(t), VARIANTS)
        return p.route(arrival(times[-1]), st, times[-1]).variant

    alone = state(families=("base",))
    assert route_after([0.0, 100.0], alone) == "k0" and alone.arrival_rate_rps < 1e-3
    burst = state(families=("base",))
    assert route_after([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], burst) == "k25"
    assert burst.arrival_rate_rps == pytest.approx(sum(0.5 * np.exp(-0.2 * i / 2.0) for i in range(1, 6)))
    assert burst.burst_price(1.0, 1.0) == pytest.approx(burst.burst_weight)  # past saturation: the whole weight
    off = state(families=("base",))
    off.burst_weight = 0.0
    assert route_after([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], off) == "k0"
    # Below saturation: the chance of waiting (one worker: its utilization), times the chance that
    # the wait outlasts the slack (M/M/1: exp(-(1 - utilization) x slack / service)).
    light = state(families=("base",))
    light.arrival_rate_rps = 0.5
    assert light.burst_price(1.0) == pytest.approx(light.burst_weight * 0.5)
    assert light.burst_price(1.0, 1.0) == pytest.approx(light.burst_weight * 0.5 * np.exp(-0.5))


def test_a_quality_floor_leaves_only_variants_predicted_above_it_and_else_serves_k0():
    c = ctx()
    emb = c.profile.quality.embeddings[0]
    everything = frozenset(VARIANTS)
    free = c.features("r0", 0.0, 5000, emb, {"k10": 1.0, "k25": 1.0}, everything)
    floored = c.features("r1", 0.0, 5000, emb, {"k10": 1.0, "k25": 1.0}, everything, min_quality=0.99)
    assert free.available == everything and "k0" in floored.available
    assert all(v == "k0" or floored.predicted_quality[v] >= 0.99 for v in floored.available)
    assert floored.available < everything  # something is predicted below 0.99 on this prompt
    from orchestrator.policy.base import FLOOR_AT_K0

    ht = make_policy("clipper-ht", c)
    both = ("base", "fast")
    assert ht.decide(free, state(families=both), 0.0).variant == "fast"
    d = ht.decide(floored, state(families=both), 0.0)
    assert d.variant == "k0" and d.reason.startswith(FLOOR_AT_K0)  # clipper-ht's own pick is below the floor
    a = make_policy("argus", c).decide(floored, state(backlog=60.0), 0.0)  # whatever load says, never below the floor
    assert a.variant in floored.available


def test_simulated_workers_drift_and_scatter_as_configured_and_overrides_reach_the_router():
    """speed_sigma/batch_sigma scatter batch durations (same seed: the same run; mean 1 over many);
    state_overrides set the router's weights; an unknown weight is an error, not ignored."""
    from orchestrator.sim.simulator import SimConfig, Simulator
    from orchestrator.sim.workload import Request

    prof = fake_profile()
    reqs = [Request(f"r{i}", 10.0 * i, "a prompt", 0, 1e6) for i in range(200)]  # one at a time: finish - arrival = its batch

    def run(**kw):
        return np.array([r.finish_s - r.arrival_s for r in Simulator(prof, make_policy("clipper-ha", ctx(prof)), SimConfig(1, **kw)).run(reqs)])

    plain = run()
    assert np.ptp(plain) < 1e-9
    drift = run(speed_sigma=0.3, speed_segment_s=100.0, batch_sigma=0.2, scatter_seed=1)
    assert np.array_equal(drift, run(speed_sigma=0.3, speed_segment_s=100.0, batch_sigma=0.2, scatter_seed=1))
    assert not np.array_equal(drift, run(speed_sigma=0.3, speed_segment_s=100.0, batch_sigma=0.2, scatter_seed=2))
    assert drift.std() > 0.1 * plain.mean() and abs(drift.mean() / plain.mean() - 1) < 0.15
    sim = Simulator(prof, make_policy("argus", ctx(prof)), SimConfig(1, state_overrides=(("burst_weight", 0.0), ("tail_devs", 0.5))))
    assert sim.state.burst_weight == 0.0 and sim.state.tail_devs == 0.5
    with pytest.raises(ValueError, match="no field 'burst'"):
        Simulator(prof, make_policy("argus", ctx(prof)), SimConfig(1, state_overrides=(("burst", 0.0),)))


def test_argus_decides_by_one_expected_utility():
    """The prompt-aware choice is predicted quality minus the time price x relative cost: a variant
    that loses 0.05 for half the worker time wins when a k0 image's time is worth more than 0.1."""
    from orchestrator.policy.router import expected_utility

    assert expected_utility(0.95, 0.5, 0.2) > expected_utility(1.0, 1.0, 0.2)
    assert expected_utility(0.95, 0.5, 0.05) < expected_utility(1.0, 1.0, 0.05)


def test_one_plan_price_spends_the_budget_on_the_prompts_that_lose_least_in_any_class():
    """The plan gives class 0 all k0 and class 1 the cheap k25 (from class means), but class 0's
    prompts lose nothing at k25 and class 1's lose much. One price for the cluster settles where the
    total budget is spent and swaps them; one price per class follows each class's plan."""
    from orchestrator.policy.router import route_planned

    prof = fake_profile()
    nearly = {"k0": 1.0, "k25": 0.999}
    fragile = {"k0": 1.0, "k25": 0.6}
    targets = {0: {"k0": 1.0}, 1: {"k25": 1.0}}

    def stream(per_class: bool) -> float:
        st = state()
        st.price_per_class = per_class
        served = []
        for i in range(3000):  # the price's step is small: it takes a while to settle
            cls = i % 2
            q = nearly if cls == 0 else fragile
            req = RequestFeatures("r", 0.0, 10.0, cls, q, frozenset(("k0", "k25")))
            d = route_planned(req, st, prof, ["k0", "k25"], targets[cls], 0.0, prompt_aware=True)
            st.apply(req, d, ["k0", "k25"], 0.0)
            st.release(d, 0.0)
            served.append(q[d.variant])
        if not per_class:
            assert (st.price[1:] == 0).all()  # one price: only entry 0 moves
        return float(np.mean(served[-200:]))

    one, per_class = stream(False), stream(True)
    assert per_class == pytest.approx((1.0 + 0.6) / 2, abs=0.03)  # each class follows its plan
    assert one > per_class + 0.1  # the lossless prompts take k25 and the fragile ones keep k0
