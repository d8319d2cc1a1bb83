"""``argus bench weights``: each router weight off in turn, paired by seed against the defaults."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.bench.weights import OFF, WeightsConfig, run_weights
from orchestrator.paths import GPU_PROFILE
from orchestrator.sim.workload import TraceSource


def test_weights_bench_pairs_each_setting_with_the_default(tmp_path):
    rng = np.random.default_rng(0)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 300, 150), rng.uniform(100, 130, 150)]))
    trace = tmp_path / "arrivals.csv"
    trace.write_text("t\n" + "\n".join(f"{t:.3f}" for t in arrivals) + "\n")
    cfg = WeightsConfig(profile_path=GPU_PROFILE, trace=TraceSource(str(trace)), num_workers=2, loads=(2.0,), seeds=2,
                        policies=("argus-noprompt",), settings=("default", "burst_weight=0", "tail_devs=0"), out_dir=tmp_path)
    out = run_weights(cfg)
    assert json.loads((tmp_path / "weights.json").read_text()) == json.loads(json.dumps(out))
    assert set(out) == {"config", "settings", "points", "wall_s"} and out["settings"]["burst_weight=0"] == {"burst_weight": 0.0}
    by = {p["setting"]: p for p in out["points"]}
    assert set(by) == {"default", "burst_weight=0", "tail_devs=0"}
    d = by["default"]
    assert d["violation_rate_minus_default"] == 0.0 and d["violation_rate_minus_default_ci95"] == [0.0, 0.0]
    for p in by.values():
        lo, hi = p["mean_rel_quality_minus_default_ci95"]
        assert lo - 1e-12 <= p["mean_rel_quality_minus_default"] <= hi + 1e-12
    assert "| tail_devs=0 |" in (tmp_path / "weights.md").read_text()
    with pytest.raises(ValueError, match="unknown setting"):
        run_weights(WeightsConfig(settings=("nope",), out_dir=tmp_path))
    assert set(OFF["tail_devs=0"]) == {("tail_devs", 0.0), ("fallback_devs", 0.0)}
