"""argus bench live: a short real replay through tritonserver and the front door, and the
simulator fed the very same request stream."""

from __future__ import annotations

import json

import pytest

from orchestrator.bench import live as bench_live
from orchestrator.bench.live import LiveBenchConfig, compare, ranking, run_live_bench


def test_ranking_and_comparison_are_by_metric_direction():
    live = {"a": {"slo_violation_pct": 1.0, "mean_quality": 0.9, "goodput_rps": 2.0},
            "b": {"slo_violation_pct": 5.0, "mean_quality": 0.95, "goodput_rps": 1.0}}
    sim = {"a": {"slo_violation_pct": 2.0, "mean_quality": 0.97, "goodput_rps": 2.5},
           "b": {"slo_violation_pct": 1.0, "mean_quality": 0.96, "goodput_rps": 1.0}}
    assert ranking(live, "slo_violation_pct", higher_is_better=False) == ["a", "b"]
    assert ranking(live, "mean_quality", higher_is_better=True) == ["b", "a"]
    c = compare(live, sim)
    assert not c["slo_violation_pct"]["same_ranking"] and c["goodput_rps"]["same_ranking"]
    assert c["mean_quality"]["live_minus_sim"]["a"] == pytest.approx(0.9 - 0.97)


@pytest.mark.triton
def test_live_replay_and_sim_see_the_same_requests(triton, tmp_path, monkeypatch):
    seen = {}
    real_replay, real_simulate = bench_live.replay, bench_live.simulate

    def spy_replay(policy, requests, *a, **kw):
        seen[policy] = list(requests)
        return real_replay(policy, requests, *a, **kw)

    def spy_simulate(profile, requests, *a, **kw):
        seen["sim"] = list(requests)
        return real_simulate(profile, requests, *a, **kw)

    monkeypatch.setattr(bench_live, "replay", spy_replay)
    monkeypatch.setattr(bench_live, "simulate", spy_simulate)
    cfg = LiveBenchConfig(trace="twitter", policies=("clipper-ht", "nirvana"), minutes=0.2, out_dir=tmp_path, worker=triton.config.grpc_url,
                          frontdoor_port=__import__("tests.conftest", fromlist=["x"]).free_port_block(1), bin_s=3.0,
                          reprofile_batches=(1, 4), reprofile_repeats=2,  # the re-profile's full size dominated this test's minutes
                          warm_prompts=6)
    result = run_live_bench(cfg)
    assert seen["clipper-ht"] == seen["nirvana"] == seen["sim"] and len(seen["sim"]) == result["requests"] > 3
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 * result["requests"]
    for rec in records:
        assert {"arrival_s", "deadline_s", "variant", "k", "latency_ms", "clip_score", "relative_quality", "violated"} <= set(rec)
        assert rec["batch"] >= 1 and 0 < rec["generation_ms"] <= rec["latency_ms"]
    ht = [r for r in records if r["policy"] == "clipper-ht"]
    assert all(r["variant"] == "fast" and r["k"] == 0 and r["clip_score"] is not None for r in ht)
    assert set(result["live"]) == set(result["sim"]) == {"clipper-ht", "nirvana"}
    assert 0 < result["live"]["clipper-ht"]["mean_quality"] < result["live"]["nirvana"]["mean_quality"] + 0.5
    for png in ("quality_over_time.png", "violations_over_time.png"):
        assert (tmp_path / png).stat().st_size > 5000
    assert result["live"]["clipper-ht"]["lost"] == 0
    # Every k0 answer under load is the image the same request gives alone, and so scores exactly 1.
    k0 = [r for r in records if r["variant"] == "k0"]
    assert all(r["same_as_reference"] and r["k0_image_of_prompt"] and r["relative_quality"] == 1.0 for r in k0)
    # Any answer that is a k0 image of its prompt (a K variant resumed from the same text's latent) scores 1.
    assert all(r["relative_quality"] == 1.0 for r in records if r["k0_image_of_prompt"])
    assert result["live"]["nirvana"]["k0_differs_from_alone"] == 0 and result["live"]["nirvana"]["k0_answers"] == len(k0)
    # Each policy's replay is bracketed by speed checks; its front door served from the profile
    # scaled to the speed before it, and its simulation ran at the mean of both ends.
    from orchestrator.profile.schema import Profile

    base = Profile.load(tmp_path / "profile.json")
    for p in ("clipper-ht", "nirvana"):
        s = result["speed"][p]
        assert 0.2 < s["before"] < 5 and 0.2 < s["after"] < 5 and s["during"] == pytest.approx((s["before"] + s["after"]) / 2)
        served_from = Profile.load(tmp_path / f"profile_{p}.json")
        assert served_from.variants["k0"].latency_ms[1] == pytest.approx(base.variants["k0"].latency_ms[1] * s["before"], rel=1e-4)
    assert set(result["sim_at_profile_speed"]) == set(result["sim_bracketed"]) == {"clipper-ht", "nirvana"}
    # The simulation runs at the speed the replay's own generation calls measured.
    for p in ("clipper-ht", "nirvana"):
        assert 0.2 < result["speed"][p]["replay"] < 5
    # Every policy's tenant held the warm prompts before its replay: clipper-ht's (whose fast
    # answers cache nothing) finds each of them exactly.
    import tritonclient.grpc as grpcclient

    from orchestrator.triton.cache import encode, lookup

    warm = bench_live.live_workload(cfg, base).warm_prompts
    assert result["warm_prompts"] == len(warm) == 6
    client = grpcclient.InferenceServerClient(triton.config.grpc_url)
    found = lookup(client, encode(client, list(warm)), tenants=[bench_live.tenant_of("clipper-ht")] * len(warm))
    client.close()
    assert (found.similarity.max(axis=1) > 0.999).all()


def test_replay_speed_is_the_answers_time_over_the_profiles_for_their_batches():
    from orchestrator.bench.live import LiveRecord, replay_speed
    from orchestrator.paths import CPU_PROFILE
    from orchestrator.profile.schema import Profile

    prof = Profile.load(CPU_PROFILE)
    k0, fast = prof.variants["k0"], prof.variants["fast"]

    def answered(variant, ms, batch):
        return LiveRecord("p", "r", 0.0, 1.0, "x", 0, variant=variant, latency_ms=ms + 5, generation_ms=ms, batch=batch)

    recs = [answered("k0", 1.5 * k0.batch_latency_ms(1), 1), answered("fast", 1.5 * fast.batch_latency_ms(4), 4),
            LiveRecord("p", "shed", 0.0, 1.0, "x", 0, error="RESOURCE_EXHAUSTED: shed")]
    assert replay_speed(recs, prof) == pytest.approx(1.5)
    slow_k0 = [answered("k0", 2.0 * k0.batch_latency_ms(2), 2), answered("fast", fast.batch_latency_ms(1), 1)]
    expected = (2.0 * k0.batch_latency_ms(2) + fast.batch_latency_ms(1)) / (k0.batch_latency_ms(2) + fast.batch_latency_ms(1))
    assert replay_speed(slow_k0, prof) == pytest.approx(expected)  # weighted by time: the long k0 batch counts more
    assert replay_speed(recs[2:], prof) is None


def test_an_answer_that_is_a_k0_image_of_its_prompt_scores_one():
    """A K variant resumed from the same text's latent returns that generation's k0 image: another
    request's reference or a warm generation's. It is a full-quality image of the prompt (quality 1,
    as the simulator scores an exact match), though against its own seed's reference the CLIP ratio
    is noise; any other image keeps its CLIP ratio."""
    import numpy as np

    from orchestrator.bench.live import LiveRecord, score, summarize_live
    from orchestrator.sim.workload import Request

    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # noqa: E731
    reqs = [Request("a", 0.0, "a red circle", 1, 1000.0), Request("b", 1.0, "a red circle", 2, 1000.0),
            Request("c", 2.0, "a blue square", 3, 1000.0), Request("d", 3.0, "a blue square", 4, 1000.0)]
    refs = {r.request_id: img() for r in reqs}
    warm = {"a blue square": [img()]}
    answers = {"a": refs["a"], "b": refs["a"], "c": warm["a blue square"][0], "d": img()}
    records = [LiveRecord("p", r.request_id, r.arrival_s, r.arrival_s + 1.0, r.prompt, r.seed, variant=v, latency_ms=10.0)
               for r, v in zip(reqs, ("k0", "k25", "k25", "k25"))]
    images = {("p", rid): im for rid, im in answers.items()}
    score(records, images, refs, reqs, warm)
    by = {r.request_id: r for r in records}
    assert by["a"].same_as_reference and by["a"].k0_image_of_prompt and by["a"].relative_quality == 1.0
    assert by["b"].k0_image_of_prompt and by["b"].relative_quality == 1.0  # request a's k0 image, same text
    assert by["c"].k0_image_of_prompt and by["c"].relative_quality == 1.0  # the warm generation's
    assert not by["d"].k0_image_of_prompt and by["d"].single_reference_quality != 1.0
    assert by["d"].quality_source == "ground_truth"  # a world prompt: scored against its specification, not by CLIP
    row = summarize_live(records, 4.0)
    assert row["k0_image_answers"] == 3 and row["mean_quality"] == pytest.approx(np.mean([r.relative_quality for r in records]))
    assert row["mean_quality_single_reference"] == pytest.approx(np.mean([r.single_reference_quality for r in records]))


def test_world_prompts_are_scored_live_by_ground_truth_and_real_prompts_by_clip():
    """A world prompt's answer is scored against the prompt's own specification (its render passes,
    a wrong colour loses), relative to its reference's; a real prompt keeps the CLIP ratio."""
    import numpy as np

    from orchestrator.bench.live import LiveRecord, score
    from orchestrator.sim.workload import Request
    import dataclasses
    import random

    from tiny_model.world import render, sample_scene

    scene = sample_scene(random.Random(4), "simple")
    wrong = dataclasses.replace(scene, objects=(dataclasses.replace(scene.objects[0], color="green" if scene.objects[0].color != "green" else "red"),))
    good, bad = np.asarray(render(scene)), np.asarray(render(wrong))
    reqs = [Request("w1", 0.0, scene.caption(), 1, 1000.0), Request("w2", 1.0, scene.caption(), 2, 1000.0),
            Request("r", 2.0, "an astronaut riding a horse", 3, 1000.0)]
    refs = {"w1": good.copy(), "w2": good.copy(), "r": np.full((32, 32, 3), 128, np.uint8)}
    nudged = good.copy()
    nudged[0, 0, 0] ^= 1  # not bit-identical to a k0 image, still the scene
    images = {("p", "w1"): nudged, ("p", "w2"): bad,
              ("p", "r"): np.full((32, 32, 3), 120, np.uint8)}
    records = [LiveRecord("p", r.request_id, r.arrival_s, r.arrival_s + 1.0, r.prompt, r.seed, variant="k25", latency_ms=10.0) for r in reqs]
    score(records, images, refs, reqs)
    by = {r.request_id: r for r in records}
    assert by["w1"].quality_source == "ground_truth" and by["w1"].relative_quality == 1.0
    assert by["w2"].quality_source == "ground_truth" and by["w2"].relative_quality < 1.0
    assert by["r"].quality_source == "clip" and by["r"].relative_quality == by["r"].single_reference_quality
