"""``argus bench sweep``: the JSON schema of its points, intervals over seeds, plots, and the goals table."""

from __future__ import annotations

import json

import numpy as np

from orchestrator.bench.sweep import ORACLE, SweepConfig, ci95, run_sweep
from orchestrator.paths import GPU_PROFILE
from orchestrator.policy.registry import policy_names
from orchestrator.sim.workload import PromptSource, TraceSource


def test_ci95_is_a_t_interval_and_a_single_seed_is_its_own_interval():
    assert ci95([0.5]) == (0.5, 0.5, 0.5)
    mean, lo, hi = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and np.isclose(hi - mean, 4.303 * 1.0 / np.sqrt(3)) and np.isclose(mean - lo, hi - mean)


def test_sweep_writes_points_with_the_documented_keys(tmp_path):
    rng = np.random.default_rng(0)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 600, 300), rng.uniform(200, 260, 200)]))  # a burst in the middle
    trace = tmp_path / "arrivals.csv"
    trace.write_text("t\n" + "\n".join(f"{t:.3f}" for t in arrivals) + "\n")
    cfg = SweepConfig(profile_path=GPU_PROFILE, trace=TraceSource(str(trace)), prompts=PromptSource("world"), num_workers=2,
                      loads=(1.0, 2.0), seeds=2, out_dir=tmp_path / "out")
    points = run_sweep(cfg)
    on_disk = json.loads((tmp_path / "out" / "sweep_sim.json").read_text())
    assert on_disk == json.loads(json.dumps(points))
    assert {(p["policy"], p["peak_load"]) for p in on_disk} == {(p, x) for p in [*policy_names(), ORACLE] for x in (1.0, 2.0)}
    for p in on_disk:
        assert set(p) == {"policy", "peak_load", "violation_rate", "mean_rel_quality", "goodput_rps", "ci95"}
        assert 0.0 <= p["violation_rate"] <= 1.0 and 0.0 < p["mean_rel_quality"] <= 1.0 and p["goodput_rps"] >= 0
        for m in ("violation_rate", "mean_rel_quality", "goodput_rps"):
            lo, hi = p["ci95"][m]
            assert lo <= p[m] + 1e-12 and p[m] <= hi + 1e-12
        assert p["ci95"]["seeds"] == 2
    ha = {p["peak_load"]: p for p in on_disk if p["policy"] == "clipper-ha"}
    assert ha[1.0]["mean_rel_quality"] == 1.0 and ha[2.0]["violation_rate"] > ha[1.0]["violation_rate"]  # overload shows at 2x
    assert sorted(f.name for f in (tmp_path / "out").glob("*.png")) == ["sweep_sim_goodput.png", "sweep_sim_quality.png", "sweep_sim_violations.png"]
    md = (tmp_path / "out" / "sweep_sim.md").read_text()
    assert "| goal | met | measured |" in md and "at 2x, 10x fewer violations than clipper-ha" in md
