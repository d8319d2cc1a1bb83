"""The pair predictor and its evaluation on synthetic triples whose quality depends on what differs
between the prompt and its cached source (a background change costs at any K, a colour change only
at large K), as the issue describes the embedded world."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from orchestrator.bench.predictor import held_out, label_ceiling, oracle_agreement, summary
from orchestrator.policy.pair_predictor import PairQualityPredictor, pair_features
from orchestrator.profile.pairs import PairTable
from tiny_model.pair_data import template_of


def synthetic_pairs(n_prompts=240, seed=0) -> PairTable:
    """Prompts = (colour, background, template) one-hot codes plus noise; sources change the colour,
    the background, or nothing. Quality: background change 0.6 at any K; colour change 1 - K/60."""
    rng = np.random.default_rng(seed)
    D = 24
    prompts, templates, embs = [], [], []

    def embed(c, b, t):
        e = np.zeros(D)
        e[c], e[8 + b], e[16 + t] = 1.0, 1.0, 0.5
        e += 0.05 * rng.normal(size=D)
        return e / np.linalg.norm(e)

    rows = []
    for i in range(n_prompts):
        c, b, t = rng.integers(8), rng.integers(8), i % 8
        ti = len(prompts)
        prompts.append(f"p{i}")
        templates.append(f"template {t}")
        embs.append(embed(c, b, t))
        for diff in ("none", "colour", "background"):
            c2 = (c + 1 + rng.integers(7)) % 8 if diff == "colour" else c
            b2 = (b + 1 + rng.integers(7)) % 8 if diff == "background" else b
            si = len(prompts)
            prompts.append(f"p{i} source {diff}")
            templates.append(f"template {t}")
            embs.append(embed(c2, b2, t))
            for k in (5, 10, 15, 20, 25):
                q = {"none": 1.0, "colour": 1.0 - k / 60, "background": 0.6}[diff]
                rows.append((ti, si, k, diff, q + 0.02 * rng.normal()))
    fast_prompts = np.array([i for i in range(len(prompts)) if " source " not in prompts[i]])
    fast_q = np.array([0.9 if np.argmax(embs[i][:8]) < 4 else 0.5 for i in fast_prompts])
    return PairTable(prompts, templates, np.array(embs, np.float32), np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                     np.array([r[2] for r in rows]), [r[3] for r in rows], np.array([r[4] for r in rows], np.float32), fast_prompts,
                     fast_q.astype(np.float32), 0.04, 4)


SPEED = {"k0": 500.0, "k5": 450.0, "k10": 400.0, "k15": 350.0, "k20": 300.0, "k25": 250.0, "fast": 100.0}


def test_templates_name_structure_not_values():
    assert template_of("a red circle on the left on a blue background") == template_of("a green square at the top on a gray background")
    assert template_of("a red circle") != template_of("a red circle on a blue background")
    assert template_of("two small red circles on a gray background") == template_of("three large blue squares on a white background")


def test_pair_predictor_sees_what_differs_and_the_prompt_only_baseline_cannot():
    pairs = synthetic_pairs()
    models = held_out(pairs, folds=4)
    pair, base = summary(models["pair"], SPEED, pairs.noise_of_mean), summary(models["prompt_only"], SPEED, pairs.noise_of_mean)
    assert set(pair) == {"mae_ratio_to_mean", "spearman", "oracle_pick_agreement", "calibration"}
    assert pair["mae_ratio_to_mean"] < 0.6 and pair["spearman"] > 0.6, pair
    assert pair["mae_ratio_to_mean"] < base["mae_ratio_to_mean"] - 0.1
    assert 0.0 <= pair["oracle_pick_agreement"] <= 1.0
    assert oracle_agreement(models["pair"], SPEED, tolerance=1.0) == 1.0  # every pick is within a tolerance of 1
    deciles = pair["calibration"]
    assert 5 <= len(deciles) <= 10 and sum(d["n"] for d in deciles) == len(pairs.target) + len(pairs.fast_prompt)
    assert abs(deciles[-1]["measured"] - deciles[-1]["predicted"]) < 0.1  # calibrated at the top


def test_folds_never_share_a_template():
    pairs = synthetic_pairs(n_prompts=64)
    models = held_out(pairs, folds=4)
    # every target is held out exactly once per K (each template belongs to one fold)
    held = [t for t, v, _, _ in models["pair"].options if v == "k5"]
    assert sorted(held) == sorted(pairs.target[pairs.k == 5].tolist())


def test_exact_match_is_full_quality_and_candidates_predict_in_one_call():
    pairs = synthetic_pairs(n_prompts=64)
    model = PairQualityPredictor.fit(pairs)
    e = pairs.embeddings[0]
    assert model.predict_step(e, e[None], [25])[0] == 1.0
    cands = pairs.embeddings[:32]
    assert pair_features(e, cands, np.full(32, 10)).shape == (32, 4 * e.shape[0] + 2)
    batch = model.predict_step(e, cands, np.full(32, 10))
    one_by_one = [model.predict_step(e, c[None], [10])[0] for c in cands]
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-5)


def test_pair_table_round_trips(tmp_path):
    pairs = synthetic_pairs(n_prompts=8)
    pairs.save(tmp_path / "p.npz")
    back = PairTable.load(tmp_path / "p.npz")
    assert back.prompts == pairs.prompts and back.difference == pairs.difference
    np.testing.assert_allclose(back.relative_quality, pairs.relative_quality)
    assert back.seed_noise_std == pytest.approx(pairs.seed_noise_std)


def test_build_pairs_on_the_embedded_model():
    """The builder on the shipped weights, smallest size: every source keeps its prompt's template
    (so template-grouped folds never split a triple), each is resumed at every level, labels name what differs."""
    from tiny_model.gt_eval import LEVELS
    from tiny_model.pair_data import PairDataConfig, build_pairs

    t = build_pairs(PairDataConfig(scenes_per_kind=1, seeds=1, two_attribute_sources=1, batch=64), log=lambda *_: None)
    assert len(t.fast_prompt) == 4 and len(t.target) % len(LEVELS) == 0 and len(t.target) >= 4 * 3 * len(LEVELS)
    for i, j, d in zip(t.target, t.source, t.difference):
        if d != "unrelated":  # an unrelated scene is the far source a cache also offers
            assert t.templates[i] == t.templates[j]
        assert (t.prompts[i] == t.prompts[j]) == (d == "none")
    assert set(t.k.tolist()) == set(LEVELS)
    assert np.isfinite(t.relative_quality).all() and (t.relative_quality >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(t.embeddings, axis=1), 1.0, rtol=1e-4)
    # The retest (`argus build-pairs --retest`): the same triples, generated from other seeds.
    again = build_pairs(PairDataConfig(scenes_per_kind=1, seeds=1, two_attribute_sources=1, batch=64, first_seed=1), log=lambda *_: None)
    assert again.prompts == t.prompts and np.array_equal(again.target, t.target) and np.array_equal(again.source, t.source)
    assert not np.array_equal(again.relative_quality, t.relative_quality)
    assert set(label_ceiling(t, again)) == {f"k{k}" for k in LEVELS} | {"fast"}


def test_the_retest_ceiling_reads_the_labels_own_noise():
    """Two measurements of the synthetic triples (the second with noise of std 0.02 added): the second predicts
    the first as well as the noise allows, at K where quality varies by pair; a table of other
    triples is refused."""
    a, b = synthetic_pairs(seed=0), synthetic_pairs(seed=0)
    rng = np.random.default_rng(1)
    b = dataclasses.replace(b, relative_quality=b.relative_quality + 0.02 * rng.normal(size=len(b.relative_quality)).astype(np.float32))
    c = label_ceiling(a, b)
    assert 0.012 < c["k25"]["label_noise"] < 0.017  # std of the difference (0.02) / sqrt 2
    assert c["k25"]["retest_spearman"] > 0.8 and c["k25"]["ceiling_mae_ratio"] < c["k25"]["retest_mae_ratio"] < 0.3
    assert c["k25"]["ceiling_correlation"] > 0.95
    assert c["fast"]["retest_spearman"] == pytest.approx(1.0) and c["fast"]["label_noise"] == 0.0
    with pytest.raises(ValueError, match="same triples"):
        label_ceiling(a, synthetic_pairs(n_prompts=8))


def test_eval_predictor_names_a_retest_of_other_triples_before_fitting(tmp_path):
    from orchestrator.bench.predictor import run_eval
    from orchestrator.paths import CPU_PROFILE
    from orchestrator.sim.inputs import InputFileError

    synthetic_pairs().save(tmp_path / "pairs.npz")
    synthetic_pairs(n_prompts=8).save(tmp_path / "retest.npz")
    with pytest.raises(InputFileError, match=r"retest\.npz: the retest table does not hold the same triples"):
        run_eval(CPU_PROFILE, tmp_path / "pairs.npz", 4, retest=tmp_path / "retest.npz")


def _target_and_sources(pairs):
    """A prompt of the synthetic world, a cached source that changed its background (listed first,
    as the more similar) and one that changed its colour."""
    i = next(i for i, p in enumerate(pairs.prompts) if " source " not in p and i > 0)
    src = {pairs.difference[j]: pairs.source[j] for j in np.flatnonzero(pairs.target == i)}
    return pairs.embeddings[i], pairs.embeddings[[src["background"], src["colour"]]]


def test_sources_are_ranked_by_predicted_quality_past_the_thresholds():
    """At K=10 a colour change costs little and a background change much: the colour-changed source
    is chosen though listed as the more similar one's runner-up, whatever the threshold; the variant
    is on offer when that source clears K's threshold or is predicted to keep the floor, else not."""
    from orchestrator.policy.pair_predictor import SourceCandidates, rank_sources

    pairs = synthetic_pairs()
    model = PairQualityPredictor.fit(pairs)
    target, sources = _target_and_sources(pairs)
    cands = SourceCandidates({"k10": np.array([7, 9, -1])}, {"k10": np.array([0.8, 0.7, -1.0], np.float32)},
                             {"k10": np.vstack([sources, np.zeros((1, sources.shape[1]), np.float32)])})
    ranked = rank_sources(model, target, cands, {"k10": 0.5}, {"k10": 10})
    assert ranked.entry == {"k10": 9} and ranked.similarity == {"k10": pytest.approx(0.7)} and ranked.offered == {"k10"}
    assert ranked.quality["k10"] == pytest.approx(1 - 10 / 60, abs=0.1)
    past = rank_sources(model, target, cands, {"k10": 0.75}, {"k10": 10}, floor=0.915)
    assert past.entry == {"k10": 9} and past.offered == frozenset()  # 0.7 < 0.75 and about 0.83 predicted < a 0.915 floor
    assert rank_sources(model, target, cands, {"k10": 0.75}, {"k10": 10}, floor=0.7).offered == {"k10"}
    assert rank_sources(model, target, cands, {"k10": 0.75}, {"k10": 10}, floor=0.95).offered == frozenset()
    empty = SourceCandidates({"k10": np.array([-1, -1])}, {"k10": np.array([-1.0, -1.0], np.float32)},
                             {"k10": np.zeros((2, sources.shape[1]), np.float32)})
    none = rank_sources(model, target, empty, {"k10": 0.5}, {"k10": 10})
    assert none.quality == {} and none.offered == frozenset()


def test_argus_resumes_from_the_source_its_pair_predictor_ranks_first():
    """Engine (Triton faked): with a pair predictor in the context, argus's features name the
    candidate predicted best for each K variant and the generation resumes from it, not from the
    probe's most similar entry; NIRVANA (fixed thresholds, its definition), the ablation, or argus
    without a pair predictor resume from the most similar."""
    import dataclasses

    from orchestrator.paths import CPU_PROFILE
    from orchestrator.policy.base import PolicyContext
    from orchestrator.policy.registry import make_policy
    from orchestrator.policy.router import Decision
    from orchestrator.profile.schema import Profile
    from orchestrator.serve.admission import Admitted
    from orchestrator.serve.config import FrontDoorConfig
    from orchestrator.serve.engine import Engine
    from orchestrator.serve.workers import Probe

    pairs = synthetic_pairs()
    target, sources = _target_and_sources(pairs)
    D, levels = target.shape[0], 5

    class FakeTriton:
        def __init__(self):
            self.entries = []

        def probe(self, prompt, tenant):
            ids = np.tile(np.array([7, 9, -1, -1]), (levels, 1))
            sims = np.tile(np.array([0.8, 0.7, -1.0, -1.0], np.float32), (levels, 1))
            embs = np.zeros((levels, 4, D), np.float32)
            embs[:, :2] = sources
            return Probe(np.zeros((1, 24, D), np.float32), target[None], target, ids[:, 0].copy(), sims[:, 0].copy(), True, 1, ids, sims, embs)

        def generate(self, worker, variant, probe, seed, entry_id, tenant):
            self.entries.append(entry_id)
            return np.zeros((1, 32, 32, 3), np.uint8), 10

    profile = Profile.load(CPU_PROFILE)
    profile.quality = dataclasses.replace(profile.quality, embeddings=np.tile(target, (len(profile.quality.prompts), 1)))
    profile.thresholds = {k: 0.5 for k in profile.thresholds}  # both fake candidates (0.8, 0.7) clear every K's threshold
    cfg = FrontDoorConfig(workers=["w0"], profile_path=CPU_PROFILE, allow_unauthenticated=True, score_quality=False, max_instances=0,
                          metrics_port=None)
    model = PairQualityPredictor.fit(pairs)
    for policy, pair, expected in (("argus", model, 9), ("argus", None, 7), ("argus-noprompt", model, 7), ("nirvana", model, 7)):
        fake = FakeTriton()
        engine = Engine(cfg, policy=make_policy(policy, dataclasses.replace(PolicyContext.build(profile, 5000.0), pair=pair)),
                        workers=fake, clock=lambda: 0.0)
        adm = engine.admit(Admitted("r", "a prompt", 1, 5000.0, None, 0.0))
        feats = engine.featurize(adm)
        assert (feats.features.sources["k10"] == 9) if expected == 9 else feats.features.sources == {}, policy
        engine.generate(adm, Decision("k10", "w0", "test"), feats.probe, feats.features.sources)
        assert fake.entries == [expected], (policy, pair)


def test_a_saved_predictor_predicts_the_same(tmp_path):
    pairs = synthetic_pairs(n_prompts=32)
    model = PairQualityPredictor.fit(pairs)
    model.save(tmp_path / "m.npz")
    back = PairQualityPredictor.load(tmp_path / "m.npz")
    e = pairs.embeddings
    np.testing.assert_allclose(back.predict_step(e[0], e[:16], np.full(16, 15)), model.predict_step(e[0], e[:16], np.full(16, 15)), rtol=1e-6)
    assert back.predict_fast(e[3]) == pytest.approx(model.predict_fast(e[3]))


def test_build_pairs_ships_its_fit_and_a_fresh_load_reads_it(tmp_path, monkeypatch):
    """``ship_pair_predictor`` writes the fit beside the pairs file and replaces older fits; the
    loader reads it there before fitting (so a fresh clone never fits), and a changed file is refitted."""
    from orchestrator import paths
    from orchestrator.sim import world

    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "runs")
    pairs_file = tmp_path / "p.pairs.npz"
    synthetic_pairs(n_prompts=32).save(pairs_file)
    (world.shipped_fit_dir(pairs_file)).mkdir()
    (world.shipped_fit_dir(pairs_file) / "stale.npz").write_bytes(b"old")
    shipped = world.ship_pair_predictor(pairs_file)
    assert [p.name for p in world.shipped_fit_dir(pairs_file).glob("*.npz")] == [shipped.name]
    world._fitted.cache_clear()
    monkeypatch.setattr(PairQualityPredictor, "fit", classmethod(lambda cls, *a, **k: pytest.fail("refitted a shipped fit")))
    e = synthetic_pairs(n_prompts=32).embeddings
    assert world.fit_pair_predictor(pairs_file).predict_fast(e[3]) == pytest.approx(PairQualityPredictor.load(shipped).predict_fast(e[3]))
    synthetic_pairs(n_prompts=16).save(pairs_file)  # new triples: the shipped fit no longer matches
    world._fitted.cache_clear()
    with pytest.raises(pytest.fail.Exception, match="refitted"):
        world.fit_pair_predictor(pairs_file)


def test_probe_rows_are_the_caches_own_candidates_labelled_by_their_cells():
    """``probe_pairs`` records what the simulated cache offers along a world stream: every source is an
    earlier prompt of the stream or a warm one, at a K the profile serves; ``probe_rows`` labels each with
    its (kind, what differs, K) cell and leaves out a held-out template's captions on either side."""
    from orchestrator.paths import paper_scale_profile
    from orchestrator.profile.schema import Profile
    from orchestrator.sim.ground_truth import truth
    from orchestrator.sim.workload import WARM_PROMPTS, world_prompt_stream
    from orchestrator.sim.world import embed_prompts, probe_pairs, probe_rows

    profile = Profile.load(paper_scale_profile())
    found = probe_pairs(profile, seeds=(100,), requests=40)
    stream = world_prompt_stream(WARM_PROMPTS + 40, seed=100)
    levels = {vp.k for vp in profile.variants.values() if vp.needs_cache}
    assert found and {k for _, _, k in found} <= levels
    assert {s for _, s, _ in found} <= set(stream)
    held = frozenset({template_of(found[0][0])})
    rows = probe_rows(profile.ground_truth, embed_prompts, found, rows=len(found))
    emb = embed_prompts(sorted({c for t, s, _ in found for c in (t, s)}))
    want = {(emb[t].tobytes(), emb[s].tobytes(), k): min(1.0, truth(profile.ground_truth, t, s, k)) for t, s, k in found}
    got = [want[(t.tobytes(), s.tobytes(), int(k))] for t, s, k in zip(rows.target, rows.source, rows.k)]
    np.testing.assert_allclose(rows.quality, got, rtol=1e-6)
    kept = probe_rows(profile.ground_truth, embed_prompts, found, rows=len(found), exclude_templates=held)
    assert 0 < len(kept.k) < len(rows.k)
    caption = {e.tobytes(): c for c, e in emb.items()}
    assert not {template_of(caption[e.tobytes()]) for e in np.vstack([kept.target, kept.source])} & held
