"""How much a prompt stream reuses: NIRVANA's K mix through the simulator's own cache, and the
calibration of the cache's thresholds on the ``world`` stream against the real log's mix.

NIRVANA serves every request at the largest K whose threshold its best cached source clears (a miss
is K=0) and the generation stores its latents at every cached level >= K (``SimCache.insert``), so
the mix depends on the stream, the thresholds and on what earlier requests left in the cache.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from orchestrator.policy.predictor import EXACT_MATCH
from orchestrator.profile.schema import Profile
from orchestrator.sim.cache import SimCache, SimCacheConfig
from orchestrator.sim.lexical import nearest_earlier
from orchestrator.sim.workload import REFERENCE_K_MIX, ReuseMix, world_prompt_stream


def nirvana_k_mix(profile: Profile, prompts: list[str], embeddings: dict[str, np.ndarray], warm: tuple[str, ...] = (),
                  cache_cfg: SimCacheConfig = SimCacheConfig()) -> dict[int, float]:
    """K -> share (%) of ``prompts`` NIRVANA serves at K, looked up in and inserted into a ``SimCache``."""
    dim = next(iter(embeddings.values())).shape[0]
    cache = SimCache(profile, dim, cache_cfg)
    for p in warm:
        cache.insert(p, embeddings[p], 0)
    counts = {0: 0, **{k: 0 for k in sorted(cache.levels.values())}}
    for p in prompts:
        found = cache.lookup(embeddings[p])
        hits = [k for v, k in cache.levels.items() if found.similarity[v] >= profile.thresholds[k]]
        k = max(hits, default=0)
        counts[k] += 1
        cache.insert(p, embeddings[p], k)
    return {k: 100.0 * c / max(len(prompts), 1) for k, c in counts.items()}


def mix_error(mix: dict[int, float], reference: dict[int, float] = REFERENCE_K_MIX) -> float:
    """The largest per-K gap in percentage points."""
    return max(abs(mix.get(k, 0.0) - r) for k, r in reference.items())


def reuse_thresholds(nearest: np.ndarray, reference: dict[int, float] = REFERENCE_K_MIX) -> dict[int, float]:
    """Per K, the similarity below which the reference's share of requests falls short of K: the
    quantile of ``nearest`` at the reference's cumulative share of smaller K (22.5% for K=5, 65.1% for
    K=10, ...). NIRVANA's published thresholds mapped onto this encoder by quantile matching."""
    levels = sorted(k for k in reference if k > 0)
    out, below = {}, 0.0
    for k in [0, *levels]:
        if k > 0:
            out[k] = float(np.quantile(nearest, below / 100.0))
        below += reference[k]
    return out


def combine_thresholds(quality: dict[int, float], reuse: dict[int, float]) -> dict[int, float]:
    """The larger of the two per K (a hit must keep the quality floor and be as rare as real reuse),
    made non-decreasing in K, and never above ``EXACT_MATCH`` (float rounding must not keep a prompt's
    own cached latent from clearing any threshold)."""
    out, running = {}, -np.inf
    for k in sorted(quality):
        running = max(running, quality[k], reuse.get(k, -np.inf))
        out[k] = float(min(running, EXACT_MATCH))
    return out


@dataclasses.dataclass(frozen=True)
class Calibration:
    thresholds: dict[int, float]
    quality_thresholds: dict[int, float]
    reuse_thresholds: dict[int, float]
    k_mix: dict[int, float]
    error_points: float


def calibrate(profile: Profile, mix: ReuseMix = ReuseMix(), n: int = 3000, warm: int = 1000, seeds: tuple[int, ...] = (0, 1),
              embed=None) -> Calibration:
    """The cache thresholds of the default world stream: per K the larger of the ground-truth table's
    quality threshold and the reuse threshold of ``seeds`` streams; then NIRVANA's K mix through the
    simulator's own cache under them (averaged over the same streams)."""
    from orchestrator.sim.world import embed_prompts

    embed = embed or embed_prompts
    streams = [world_prompt_stream(warm + n, seed=s, mix=mix) for s in seeds]
    embs = [embed(st) for st in streams]
    nearest = np.concatenate([nearest_earlier(st, e, warm) for st, e in zip(streams, embs)])
    quality = dict(profile.ground_truth.quality_thresholds if profile.ground_truth is not None else profile.thresholds)
    reuse = reuse_thresholds(nearest)
    thresholds = combine_thresholds(quality, reuse)
    calibrated = dataclasses.replace(profile, thresholds=thresholds)
    shares = [nirvana_k_mix(calibrated, st[warm:], e, tuple(st[:warm])) for st, e in zip(streams, embs)]
    k_mix = {k: float(np.mean([s[k] for s in shares])) for k in shares[0]}
    return Calibration(thresholds, quality, reuse, k_mix, mix_error(k_mix))


def calibration_report(profile_paths: list, n: int = 3000, warm: int = 1000, write: bool = False, log=print) -> dict:
    """``argus calibrate-reuse``: the thresholds (written into every profile with ``write``) and NIRVANA's
    K mix on the default stream under them, against the reference."""
    cal = calibrate(Profile.load(profile_paths[0]), n=n, warm=warm)
    if write:
        for path in profile_paths:
            prof = Profile.load(path)
            dataclasses.replace(prof, thresholds={k: cal.thresholds[k] for k in prof.thresholds}).save(path)
            log(f"{path}: thresholds {cal.thresholds}")
    r4 = lambda d: {str(k): round(v, 4) for k, v in d.items()}  # noqa: E731
    return {"mix": dataclasses.asdict(ReuseMix()), "thresholds": r4(cal.thresholds), "quality_thresholds": r4(cal.quality_thresholds),
            "reuse_thresholds": r4(cal.reuse_thresholds), "k_mix_pct": {str(k): round(v, 2) for k, v in cal.k_mix.items()},
            "reference_pct": {str(k): v for k, v in REFERENCE_K_MIX.items()}, "worst_gap_points": round(cal.error_points, 2)}
