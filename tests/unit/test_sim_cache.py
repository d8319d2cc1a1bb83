"""The simulator's cache (the cache_retrieval store on a virtual clock), its ground-truth world, and
the reuse of the default world stream."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from orchestrator.sim.cache import SimCache, SimCacheConfig
from orchestrator.profile.ground_truth import Cell, GroundTruthTable
from orchestrator.sim.ground_truth import calibrate_thresholds
from orchestrator.sim.world import CacheWorld
from tests.unit.test_policies import fake_profile

LEVELS = (10, 25)


def unit(*xs):
    v = np.zeros(16, np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


def gt_table() -> GroundTruthTable:
    step = {}
    for kind in ("simple", "medium", "hard", "counting"):
        for diff, (q10, q25) in {"none": (1.0, 0.99), "colour": (0.97, 0.9), "background": (0.8, 0.5), "several": (0.6, 0.3)}.items():
            step[(kind, diff, 10)], step[(kind, diff, 25)] = Cell(q10, 16, 0.02), Cell(q25, 16, 0.03)
    bins = {k: (np.array([0.5, 0.9, 1.0], np.float32), np.array([0.3, 0.7, 0.98], np.float32)) for k in LEVELS}
    return GroundTruthTable(step, {"simple": Cell(0.9, 16, 0.02), "hard": Cell(0.4, 16, 0.05)}, bins, {10: 0.5, 25: 0.9})


def profile_with_gt():
    p = fake_profile()
    return dataclasses.replace(p, ground_truth=gt_table(), thresholds={10: 0.5, 25: 0.9})


def test_a_generation_at_k_stores_the_levels_it_passed_and_the_lookup_offers_candidates():
    cache = SimCache(profile_with_gt(), 16, SimCacheConfig(candidates=2))
    a = cache.insert("a", unit(1, 0), from_k=0)
    b = cache.insert("b", unit(1, 0.3), from_k=25)  # served at K=25: only its level-25 latent
    found = cache.lookup(unit(1, 0.29))
    assert found.entry["k25"] == b and found.entry["k10"] == a  # b holds no K=10 latent
    assert list(found.candidates.ids["k25"]) == [b, a] and found.candidates.ids["k10"][1] == -1
    assert found.similarity["k25"] == pytest.approx(float(unit(1, 0.29) @ unit(1, 0.3)), abs=1e-6)
    np.testing.assert_allclose(found.candidates.embeddings["k25"][1], unit(1, 0), atol=1e-6)
    assert cache.fetch(a, 10) == "a" and cache.fetch(b, 10) is None


def test_the_simulated_cache_evicts_and_keeps_tenants_apart():
    clock = [0.0]
    cache = SimCache(profile_with_gt(), 16, SimCacheConfig(capacity_items=4, policy="lru"), clock=lambda: clock[0])
    for i in range(4):
        clock[0] = float(i)
        cache.insert(f"p{i}", unit(1, i), from_k=0)  # 2 items each
    assert len(cache.store.items) <= 4 and cache.store.evictions > 0
    assert cache.lookup(unit(1, 0)).entry["k10"] != 0  # the oldest went first
    cache.insert("mine", unit(0, 1), from_k=0, tenant="t1")
    assert cache.lookup(unit(0, 1), tenant="t2").entry["k10"] == -1
    assert cache.lookup(unit(0, 1), tenant="t1").similarity["k10"] == pytest.approx(1.0)


def test_truth_is_the_measured_cell_for_what_differs_and_the_kind():
    prompts = ["a red circle on a gray background", "a blue circle on a gray background", "a red circle on a blue background",
               "a red circle on the left and a blue square on the right", "a photo of a cat"]
    emb = {p: unit(1, 0.01 * i) for i, p in enumerate(prompts)}
    world = CacheWorld(profile_with_gt(), emb, warm=(prompts[0],))
    view = world.observe(prompts[0])  # an exact repeat: the same prompt's latent
    assert view.truth["k10"] == 1.0 and view.truth["k25"] == 0.99 and view.truth["fast"] == 0.9
    assert world.observe(prompts[1]).truth["k25"] == 0.9  # colour differs
    assert world.observe(prompts[2]).truth["k25"] == 0.5  # background differs
    assert world.observe(prompts[3]).truth["k10"] == 0.6  # another scene: several differ
    real = world.observe(prompts[4])  # not a world prompt: borrowed by similarity
    assert real.truth["k25"] == gt_table().by_similarity(25, real.similarity["k25"])


def test_the_world_caches_what_was_served_from_the_level_it_started_at():
    emb = {"a red circle": unit(1, 0), "a blue circle": unit(1, 0.1)}
    world = CacheWorld(profile_with_gt(), emb)
    assert world.observe("a red circle").similarity["k10"] == -1.0  # empty
    world.served("a red circle", "k25", 1.0)
    view = world.observe("a blue circle")
    assert view.similarity["k10"] == -1.0 and view.similarity["k25"] > 0.9
    world.served("a red circle", "fast", 2.0)  # the fast model leaves no latents
    assert len(world.cache.store.embeddings) == 1


def test_argus_in_the_simulator_resumes_from_a_less_similar_source_when_it_predicts_better():
    """Two cached sources clear K=25's threshold; the more similar differs in background (0.5 measured),
    the other in colour (0.9). A pair predictor that ranks them serves from the second."""
    from orchestrator.policy.base import PolicyContext
    from orchestrator.policy.registry import make_policy
    from orchestrator.sim.simulator import SimConfig, Simulator
    from orchestrator.sim.workload import Request

    target, near, far = "a red circle on a gray background", "a red circle on a blue background", "a blue circle on a gray background"
    emb = {target: unit(1, 0), near: unit(1, 0.2), far: unit(1, 0.35)}
    profile = profile_with_gt()
    world = CacheWorld(profile, emb, warm=(near, far))

    class ColourOverBackground:  # a fake pair predictor: predicts what the table measured
        def predict_step(self, e, sources, k):
            return np.array([0.5 if np.allclose(s, emb[near]) else 0.9 for s in sources])

        def predict_fast(self, e):
            return 0.5

    slo_ms = 600.0  # only K=25 (500 ms) and the fast model (300 ms) fit
    ctx = PolicyContext.build(profile, slo_ms=slo_ms)
    ctx.pair = ColourOverBackground()
    policy = make_policy("argus", ctx)
    assert policy.ranks_sources
    sim = Simulator(profile, policy, SimConfig(num_workers=1), world=world)
    rec = sim.run([Request("r0", 0.0, target, 0, slo_ms)])[0]
    assert rec.variant == "k25" and rec.quality == pytest.approx(0.9)  # the colour source, not the more similar background one

    world = CacheWorld(profile, emb, warm=(near, far))
    view = world.observe(target)
    assert view.similarity["k25"] == pytest.approx(float(emb[target] @ emb[near]), abs=1e-6)
    assert world.commit(target, "k25", None, view) == pytest.approx(0.5)  # the most similar source
    far_entry = next(e for e, p in world.cache.prompt_of.items() if p == far)
    assert world.commit(target, "k25", far_entry, view) == pytest.approx(0.9)


def test_quality_thresholds_find_where_the_quality_curve_meets_the_floor_and_rise_with_k():
    rng = np.random.default_rng(0)
    sim = rng.uniform(0.3, 1.0, 4000)
    k = np.repeat([5, 25], 2000)
    quality = np.where(k == 5, 1.0 - 0.3 * (1 - sim), 1.0 - 1.2 * (1 - sim)) + rng.normal(0, 0.02, 4000)
    th = calibrate_thresholds(sim, quality, k, floor=0.95)
    assert th[5] == pytest.approx(1 - 0.05 / 0.3, abs=0.03) and th[25] == pytest.approx(1 - 0.05 / 1.2, abs=0.02)
    flat = calibrate_thresholds(sim, np.full(4000, 0.99), k, floor=0.95)
    assert flat[5] == pytest.approx(sim[k == 5].min()) and flat[25] >= flat[5]  # no loss anywhere: any source; monotone in K
    assert calibrate_thresholds(sim, np.full(4000, 0.5), k, floor=0.95) == {5: 1.0, 25: 1.0}  # never good enough: exact only


def test_cache_thresholds_are_the_larger_of_quality_and_reuse_and_rise_with_k():
    from orchestrator.sim.reuse import combine_thresholds, reuse_thresholds
    from orchestrator.sim.workload import REFERENCE_K_MIX

    nearest = np.linspace(0.0, 1.0, 1001)
    reuse = reuse_thresholds(nearest)
    assert reuse[5] == pytest.approx(REFERENCE_K_MIX[0] / 100, abs=1e-3)  # 22.5% of requests fall below K=5's
    assert reuse[10] == pytest.approx((REFERENCE_K_MIX[0] + REFERENCE_K_MIX[5]) / 100, abs=1e-3)
    both = combine_thresholds({5: 0.9, 10: 0.1, 15: 0.2, 20: 0.3, 25: 1.0}, reuse)
    assert both[5] == 0.9 and both[10] == 0.9 and both[15] >= reuse[15] and both[25] == pytest.approx(0.9999)


@pytest.fixture(scope="module")
def shipped():
    from orchestrator.paths import CPU_PROFILE
    from orchestrator.profile.schema import Profile

    return Profile.load(CPU_PROFILE)


def test_the_shipped_thresholds_are_the_repositorys_keep_the_quality_floor_and_rise_with_k(shipped):
    from orchestrator.triton.repository import RepositoryConfig

    assert shipped.ground_truth is not None, "argus build-pairs writes the ground-truth table into the profile"
    th = shipped.thresholds
    assert {k: round(t, 4) for k, t in RepositoryConfig().cache_thresholds} == {k: round(t, 4) for k, t in th.items()}
    assert all(th[k] >= min(shipped.ground_truth.quality_thresholds[k], 0.9999) - 1e-4 for k in th)
    levels = sorted(th)
    assert all(th[a] < th[b] for a, b in zip(levels, levels[1:]))  # they differ per K and rise, as NIRVANA's published ones


def test_nirvana_k_mix_on_the_default_world_stream_matches_the_real_log(shipped):
    """The simulator's own lookups (SimCache, NIRVANA's rule, inserts from the served K) over the default
    stream, on a seed the calibration never saw, within 3 points of the DiffusionDB log for every K."""
    from orchestrator.bench.common import WARM_PROMPTS
    from orchestrator.sim.reuse import nirvana_k_mix
    from orchestrator.sim.workload import REFERENCE_K_MIX, world_prompt_stream
    from orchestrator.sim.world import embed_prompts

    stream = world_prompt_stream(WARM_PROMPTS + 3000, seed=7)
    mix = nirvana_k_mix(shipped, stream[WARM_PROMPTS:], embed_prompts(stream), tuple(stream[:WARM_PROMPTS]))
    gaps = {k: round(mix[k] - ref, 1) for k, ref in REFERENCE_K_MIX.items()}
    assert all(abs(g) <= 3.0 for g in gaps.values()), (mix, gaps)
