"""Traces (parsing, bad rows, scaling), request streams, and the discrete-event simulator."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.policy.registry import make_policy
from orchestrator.sim.simulator import SimConfig, Simulator, summarize
from orchestrator.sim.workload import SHARED, Trace, TraceError, load_arrival_csv, load_trace, on_off, poisson, request_stream, scale_to_peak, world_prompt_stream
from tests.unit.test_policies import ctx, fake_profile

HAVE_SHARED = (SHARED / "traces").exists()


@pytest.mark.skipif(not HAVE_SHARED, reason="../shared/data not present")
def test_twitter_trace_parses_as_published():
    t = load_trace("twitter")
    assert len(t.arrivals_s) == 75_253
    assert 285 < t.duration_s < 292 and t.peak_rps() >= 1000


@pytest.mark.skipif(not HAVE_SHARED, reason="../shared/data not present")
@pytest.mark.parametrize("name", ["azure-code", "servegen-mm", "maf"])
def test_other_traces_load(name):
    t = load_trace(name, seed=1)
    assert len(t.arrivals_s) > 100 and np.all(np.diff(t.arrivals_s) >= 0)


def test_bad_rows_get_a_clear_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("start_time,qos_level\n10,1\nnot-a-time,1\n")
    with pytest.raises(TraceError, match=r"t\.csv:3: .*neither a number nor a timestamp"):
        load_arrival_csv(path, "start_time", 1e-3, "bad")
    path.write_text("other\n1\n")
    with pytest.raises(TraceError, match="missing column"):
        load_arrival_csv(path, "start_time", 1e-3, "bad")


def test_scaling_hits_the_target_peak_and_duration():
    base = on_off(2, 10, period_s=20, duty=0.25, duration_s=200, seed=1)
    scaled = scale_to_peak(base, target_peak_rps=3.0, duration_s=100, window_s=5.0)
    assert scaled.duration_s <= 100.5
    assert scaled.peak_rps(5.0) == pytest.approx(3.0, rel=0.25)
    assert np.array_equal(scale_to_peak(base, 3.0, 100, 5.0).arrivals_s, scaled.arrivals_s)  # deterministic


def test_request_streams_are_identical_for_a_seed():
    trace = poisson(2.0, 30, seed=3)
    a = request_stream(trace, world_prompt_stream(len(trace.arrivals_s), seed=5), slo_ms=2000, seed=9)
    b = request_stream(poisson(2.0, 30, seed=3), world_prompt_stream(len(trace.arrivals_s), seed=5), slo_ms=2000, seed=9)
    assert a == b
    from orchestrator.sim.workload import world_heavy_stream

    assert len(set(world_heavy_stream(500, seed=5))) < 400  # the heavy preset: popular templates and iteration repeat prompts
    assert 400 < len(set(world_prompt_stream(500, seed=5))) < 490  # real reuse: a few exact repeats, mostly edits and fresh scenes


def test_simulator_event_order_and_batching_on_a_virtual_clock():
    prof = fake_profile()
    sim = Simulator(prof, make_policy("clipper-ha", ctx(prof)), SimConfig(num_workers=1, max_batch=4))
    reqs = request_stream(Trace("t", np.array([0.0, 0.1, 0.2, 5.0])), ["a", "b", "c", "d"], slo_ms=10_000)
    recs = sim.run(reqs)
    assert [r.request_id for r in recs] == [r.request_id for r in reqs]
    # r0 runs alone (1.0 s); r1 and r2 queue behind it and run as one batch of 2 (linear between the
    # profiled b=1 and b=4, 1 s and 3 s: 1.67 s), as a dynamic batcher runs it, unpadded.
    assert recs[0].finish_s == pytest.approx(1.0)
    assert recs[1].finish_s == pytest.approx(1.0 + 5 / 3) and recs[2].finish_s == pytest.approx(1.0 + 5 / 3)
    assert recs[3].finish_s == pytest.approx(6.0)
    assert all(r.variant == "k0" and r.quality == 1.0 for r in recs)


def test_simulated_overload_ranks_policies_as_designed():
    prof = fake_profile()
    trace = poisson(4.0, 120, seed=2)  # 2 workers, k0 capacity ~2.7 img/s with batching
    reqs = request_stream(trace, world_prompt_stream(len(trace.arrivals_s), seed=2), slo_ms=4000)
    out = {}
    for name in ("argus", "clipper-ha", "clipper-ht", "nirvana", "proteus"):
        recs = Simulator(prof, make_policy(name, ctx(prof)), SimConfig(num_workers=2, plan_interval_s=2.0)).run(reqs)
        out[name] = summarize(recs, trace.duration_s)
    assert out["argus"]["slo_violation_pct"] < out["clipper-ha"]["slo_violation_pct"]
    assert out["argus"]["mean_quality"] > out["clipper-ht"]["mean_quality"]
    assert out["clipper-ha"]["mean_quality"] == 1.0
