"""Ground-truth pair data: (new prompt, cached source prompt, K) triples and (prompt, fast) pairs,
each with its measured relative quality: what the pair predictor (``orchestrator.policy.pair_predictor``)
trains on and what the simulator's ground-truth table is grouped from. The embedded model's
generator is ``tiny_model.pair_data``; a deployment with another model writes the same file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class PairTable:
    """Prompts once (text, template, unit-norm pooled embedding), then triples and fast pairs by index."""

    prompts: list[str]
    templates: list[str]
    embeddings: np.ndarray
    """(prompts, D) unit norm: what the cache keys on."""
    target: np.ndarray
    """(triples,) index of the new prompt."""
    source: np.ndarray
    """(triples,) index of the cached source prompt."""
    k: np.ndarray
    """(triples,) step-skip level."""
    difference: list[str]
    """(triples,) what differs between them ('none', 'colour', 'colour+background', ...)."""
    relative_quality: np.ndarray
    """(triples,) seed-averaged ground-truth quality over the new prompt's K=0 quality."""
    fast_prompt: np.ndarray
    """(fast pairs,) prompt index."""
    fast_quality: np.ndarray
    """(fast pairs,) relative quality of the fast model on it."""
    seed_noise_std: float = 0.0
    """Per-prompt K=0 ground-truth quality, std across seeds: the floor under any per-prompt spread."""
    seeds: int = 1
    """Generations each quality is averaged over."""

    @property
    def noise_of_mean(self) -> float:
        """Standard error of one seed-averaged quality: differences below it are not measured differences."""
        return self.seed_noise_std / np.sqrt(max(self.seeds, 1))

    @property
    def similarity(self) -> np.ndarray:
        return np.sum(self.embeddings[self.target] * self.embeddings[self.source], axis=1)

    def subset(self, triples: np.ndarray | None = None, fast_rows: np.ndarray | None = None) -> PairTable:
        """Only these triple and fast-pair rows (the prompts stay, so indices keep their meaning)."""
        t = np.arange(len(self.target)) if triples is None else np.asarray(triples)
        f = np.arange(len(self.fast_prompt)) if fast_rows is None else np.asarray(fast_rows)
        return dataclasses.replace(self, target=self.target[t], source=self.source[t], k=self.k[t],
                                   difference=[self.difference[i] for i in t], relative_quality=self.relative_quality[t],
                                   fast_prompt=self.fast_prompt[f], fast_quality=self.fast_quality[f])

    def save(self, path: Path) -> None:
        np.savez_compressed(path, prompts=np.array(self.prompts), templates=np.array(self.templates), embeddings=self.embeddings.astype(np.float32),
                            target=self.target, source=self.source, k=self.k, difference=np.array(self.difference),
                            relative_quality=self.relative_quality.astype(np.float32), fast_prompt=self.fast_prompt,
                            fast_quality=self.fast_quality.astype(np.float32), seed_noise_std=np.float32(self.seed_noise_std),
                            seeds=np.int64(self.seeds))

    @classmethod
    def load(cls, path: Path) -> PairTable:
        z = np.load(path)
        return cls([str(p) for p in z["prompts"]], [str(t) for t in z["templates"]], z["embeddings"], z["target"], z["source"], z["k"],
                   [str(d) for d in z["difference"]], z["relative_quality"], z["fast_prompt"], z["fast_quality"], float(z["seed_noise_std"]),
                   int(z["seeds"]) if "seeds" in z else 1)
