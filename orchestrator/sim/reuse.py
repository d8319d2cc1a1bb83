"""How much a prompt stream reuses: NIRVANA's K mix through the simulator's own cache, and the
calibration of the ``world`` stream's proportions against the real log's mix.

NIRVANA serves every request at the largest K whose threshold its best cached source clears (a miss
is K=0) and the generation stores its latents at every cached level >= K (``SimCache.insert``), so
the mix depends on the stream, the thresholds and on what earlier requests left in the cache.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from orchestrator.profile.schema import Profile
from orchestrator.sim.cache import SimCache, SimCacheConfig
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


@dataclasses.dataclass(frozen=True)
class Calibration:
    mix: ReuseMix
    k_mix: dict[int, float]
    error_points: float


def calibrate_mix(profile: Profile, n: int = 3000, warm: int = 1000, seeds: tuple[int, ...] = (0, 1),
                  repeats=(0.03, 0.05, 0.07), edits=(0.3, 0.4, 0.5, 0.6, 0.7), two=(0.0, 0.3, 0.6), windows=(50, 200, 1000),
                  embed=None, log=print) -> Calibration:
    """Grid search of ``ReuseMix`` for the smallest worst-K gap to ``REFERENCE_K_MIX``, averaged over
    ``seeds`` streams of ``warm`` cached prompts followed by ``n`` requests."""
    from orchestrator.sim.world import embed_prompts

    memo: dict[str, np.ndarray] = {}

    def embed_memo(prompts: list[str]) -> dict[str, np.ndarray]:
        missing = [p for p in dict.fromkeys(prompts) if p not in memo]
        if missing:
            memo.update((embed or embed_prompts)(missing))
        return memo

    best = None
    for r, e, t, w in itertools.product(repeats, edits, two, windows):
        mix = ReuseMix(r, e, t, w)
        shares = []
        for seed in seeds:
            stream = world_prompt_stream(warm + n, seed=seed, mix=mix)
            emb = embed_memo(stream)
            shares.append(nirvana_k_mix(profile, stream[warm:], emb, tuple(stream[:warm])))
        k_mix = {k: float(np.mean([s[k] for s in shares])) for k in shares[0]}
        err = mix_error(k_mix)
        if best is None or err < best.error_points:
            best = Calibration(mix, k_mix, err)
            log(f"{mix}: {', '.join(f'K={k} {v:.1f}%' for k, v in k_mix.items())} (worst gap {err:.1f} points)")
    return best


def calibration_report(profile_path, n: int = 3000, warm: int = 1000, log=print) -> dict:
    """``argus calibrate-reuse``: the best mix, its K shares and the reference, as JSON."""
    best = calibrate_mix(Profile.load(profile_path), n=n, warm=warm, log=log)
    return {"mix": dataclasses.asdict(best.mix), "k_mix_pct": {str(k): round(v, 2) for k, v in best.k_mix.items()},
            "reference_pct": {str(k): v for k, v in REFERENCE_K_MIX.items()}, "worst_gap_points": round(best.error_points, 2)}
