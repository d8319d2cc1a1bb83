"""The simulator's cache: the ``cache_retrieval`` model's own store, on the virtual clock.

``SimCache`` wraps ``triton_backend.cache_store.LatentCache`` (the store the Triton model runs), so
eviction (LCBFU/LRU over (entry, K) items), tenants and the ranked lookup behave as live. It keeps
prompts instead of latents: an item's latent is one float, and the byte budget is the repository's
count of items (its byte budget over one tiny-model item's bytes). A lookup returns what
``t2i_probe`` returns live: the best source per K and up to ``candidates`` sources per K with their
similarities and stored embeddings. A generation at level K stores its latents at every cached level
>= K (the denoiser saves the levels it passes); the fast model stores none.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from orchestrator.policy.pair_predictor import SourceCandidates
from orchestrator.profile.schema import Profile
from triton_backend.cache_store import CANDIDATES_PER_LEVEL, CacheConfig, LatentCache

LATENT = np.zeros(1, np.float32)


@dataclasses.dataclass(frozen=True)
class SimCacheConfig:
    capacity_items: int | None = None
    """(entry, K) latents the cache holds; None: as many as the repository's byte budget holds for the tiny model."""
    policy: str = "lcbfu"
    candidates: int = CANDIDATES_PER_LEVEL
    """Sources per K offered to a policy that ranks them (``t2i_probe``'s CANDIDATE_* outputs)."""


@dataclasses.dataclass(frozen=True)
class Lookup:
    similarity: dict[str, float]
    """K variant -> best cached similarity (-1 when nothing is cached at K)."""
    entry: dict[str, int]
    """K variant -> the most similar entry (-1 when none)."""
    candidates: SourceCandidates


def repository_capacity_items(embedding_dim: int) -> int:
    """How many (entry, K) items the default repository's byte budget holds for the tiny model."""
    from orchestrator.triton.repository import RepositoryConfig

    repo = RepositoryConfig()
    item_bytes = int(np.prod(repo.dims.latent_shape)) * 4 + embedding_dim * 4
    return repo.cache_byte_budget // item_bytes


class SimCache:
    def __init__(self, profile: Profile, embedding_dim: int, cfg: SimCacheConfig = SimCacheConfig(), clock=lambda: 0.0):
        self.levels = {f"k{vp.k}": vp.k for v, vp in profile.variants.items() if vp.needs_cache}
        capacity = cfg.capacity_items or repository_capacity_items(embedding_dim)
        store_cfg = CacheConfig(levels=tuple(sorted(self.levels.values())), embedding_dim=embedding_dim, latent_shape=(1,),
                                byte_budget=capacity * (4 + embedding_dim * 4), policy=cfg.policy,
                                thresholds={k: profile.thresholds[k] for k in self.levels.values()})
        self.store = LatentCache(store_cfg, clock=clock)
        self.cfg = cfg
        self.prompt_of: dict[int, str] = {}

    def insert(self, prompt: str, embedding: np.ndarray, from_k: int = 0, tenant: str = "") -> int:
        """A generation that started at level ``from_k`` stores its latents at every cached level >= it."""
        entry = self.store.insert(embedding, {k: LATENT for k in self.levels.values() if k >= from_k}, tenant)
        self.prompt_of[entry] = prompt
        return entry

    def lookup(self, embedding: np.ndarray, tenant: str = "") -> Lookup:
        cands = self.store.candidates(embedding, tenant, self.cfg.candidates)
        sims, best, ids, csims, cembs = {}, {}, {}, {}, {}
        dim = self.store.cfg.embedding_dim
        for name, k in self.levels.items():
            found = cands[k]
            sims[name] = found[0].similarity if found else -1.0
            best[name] = found[0].entry_id if found else -1
            pad = self.cfg.candidates - len(found)
            ids[name] = np.array([m.entry_id for m in found] + [-1] * pad, np.int64)
            csims[name] = np.array([m.similarity for m in found] + [-1.0] * pad, np.float32)
            cembs[name] = np.stack([self.store.entry_embedding(m.entry_id) for m in found] + [np.zeros(dim, np.float32)] * pad)
        return Lookup(sims, best, SourceCandidates(ids, csims, cembs))

    def fetch(self, entry: int, k: int, tenant: str = "") -> str | None:
        """The source prompt of ``entry`` at level K, counting the hit (frequency feeds LCBFU); None once evicted."""
        if self.store.fetch_entry(entry, k, tenant) is None:
            return None
        return self.prompt_of[entry]
