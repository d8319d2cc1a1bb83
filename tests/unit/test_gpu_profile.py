"""``argus gpu-profile``: the measuring code path (a toy configuration on the CPU: no GPU in CI), and
profiles built from timing rows, including the reference H100 measurements in ../shared/data/gpu."""

from __future__ import annotations

import pytest

from orchestrator.paths import CPU_PROFILE, SHARED_DATA
from orchestrator.profile.gpu_measure import MeasureConfig, PartsConfig, gpu_slug, measure_parts, profile_from_rows, read_rows
from orchestrator.profile.schema import Profile

GPU_DATA = SHARED_DATA / "gpu"


def test_measuring_the_parts_writes_rows_a_profile_can_be_built_from():
    rows = measure_parts(MeasureConfig(parts=PartsConfig.tiny(), device="cpu", batches=(1, 2), repeats=1, warmup=0), log=lambda *_: None)
    whats = {r.get("what") for r in rows}
    assert {"unet_step_eager", "unet_step_nocfg_eager", "vae_decode_eager", "text_encoders_eager", "unet_load"} <= whats
    assert rows[0]["gpu"] == "cpu" and all(r["ms_median"] > 0 for r in rows if r.get("what") == "unet_step_eager")
    prof = profile_from_rows(rows, Profile.load(CPU_PROFILE), mode="eager", batches=(1, 2))
    lat = {v: vp.latency_ms[1] for v, vp in prof.variants.items()}
    assert lat["k0"] > lat["k10"] > lat["k25"] and prof.variants["fast"].load_time_s > 0 and prof.variants["k0"].load_time_s == 0


@pytest.mark.skipif(not GPU_DATA.exists(), reason="../shared/data/gpu not present")
def test_the_h100_reference_rows_give_the_documented_latencies():
    rows = read_rows(sorted(GPU_DATA.glob("*.jsonl")))
    prof = profile_from_rows(rows, Profile.load(CPU_PROFILE))
    # ../shared/data/gpu/README.md: a 50-step image ~2.27 s, K=25 ~1.18 s, a 4-step distilled image ~0.20 s at batch 1.
    assert prof.variants["k0"].latency_ms[1] == pytest.approx(2270, rel=0.01)
    assert prof.variants["k25"].latency_ms[1] == pytest.approx(1180, rel=0.01)
    assert prof.variants["fast"].latency_ms[1] == pytest.approx(200, rel=0.03)
    assert prof.variants["fast"].load_time_s == pytest.approx(5.34)
    assert gpu_slug(rows[0]["gpu"]) == "h100" and gpu_slug("NVIDIA A100-SXM4-80GB") == "a100"
